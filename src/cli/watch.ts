import { gunzipSync } from 'node:zlib';
import { connect, type IClientOptions } from 'mqtt';
import { EXIT } from '../exit-codes.js';
import { FleetWatcher, type WatchEvent } from '../watch/fleet-watcher.js';
import type { WireBatch } from '../sync/payload.js';
import { formatDuration } from '../util/duration.js';
import { CliError, configOption, type Command } from './command.js';
import { cliConfig, cliSecrets } from './context.js';
import type { LinkSecrets } from '../config/secrets.js';
import { describeConnectError } from '../mqtt/connect-errors.js';
import { printable, printableJson } from '../util/printable.js';
import { firstOnly, Repeating } from '../util/log-throttle.js';
import { redactUrl } from '../util/url.js';

function time(ms: number): string {
  return new Date(ms).toISOString().slice(11, 23);
}

/** One line per event, for people; every string that came from a device made printable first. */
export function formatWatchEvent(e: WatchEvent): string {
  const head = `${time(e.at)}  ${printable(e.device).padEnd(16)}`;
  switch (e.type) {
    case 'status': {
      const s = e.status;
      const state = printable(s.state ?? '?').toUpperCase();
      const extra = s.state === 'offline' ? ` (${printable(s.reason ?? '')})` : '';
      const nums = ['pending', 'parked', 'syncedTotal', 'lostTotal'].filter((k) => typeof s[k] === 'number').map((k) => `${k} ${String(s[k])}`);
      return `${head}  status  ${state}${extra}${nums.length ? '  ' + nums.join('  ') : ''}`;
    }
    case 'batch': {
      const flags = [
        e.duplicates ? `DUPLICATES ${e.duplicates}` : '',
        e.newGaps.length ? `GAP ${e.newGaps.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')}` : '',
        e.filled ? `late ${e.filled} (gap closing, ${e.openGapReadings} still missing)` : '',
        e.compressed ? 'gzip' : '',
      ].filter(Boolean);
      return `${head}  batch   ${String(e.rows).padStart(5)} readings  seq ${e.firstSeq}-${e.lastSeq}  delay ${formatDuration(Math.max(0, e.delayMs))}${e.maxDelayMs - e.delayMs > 1000 ? ` (oldest ${formatDuration(e.maxDelayMs)})` : ''}${flags.length ? '  ' + flags.join('  ') : ''}`;
    }
    case 'dropped':
      return `${head}  DROPPED ${printable(e.count)} readings on the device (${printable(e.reason ?? 'disk cap')}): seq ${e.ranges.map(([a, b]) => `${printable(a)}-${printable(b)}`).join(',')}`;
    case 'bad':
      return `${head}  unreadable message: ${printable(e.error)}`;
    case 'state': {
      const vals = e.values.map((v) => `${printable(v.name)} ${v.value === null ? '-' : printable(v.value)}${typeof v.unit === 'string' && v.unit ? ` ${printable(v.unit)}` : ''}`);
      const ages = e.values.map((v) => v.ageMs).filter((a): a is number => a !== null);
      const oldest = ages.length ? Math.max(...ages) : undefined;
      return `${head}  state   ${vals.join('  ')}${e.more > 0 ? `  (+${e.more} more)` : ''}${oldest !== undefined && oldest > 5000 ? `  (oldest ${formatDuration(oldest)} old)` : ''}`;
    }
  }
}

export const watchCommand: Command = {
  name: 'watch',
  usage: 'edge-sensor watch [--config PATH | --url URL [--prefix P]] [--protocol 4|5] [--json]',
  options: { ...configOption, url: { type: 'string' }, prefix: { type: 'string' }, protocol: { type: 'string' }, json: { type: 'boolean' } },
  async run(values) {
    let url = values.url as string | undefined;
    let prefix = values.prefix as string | undefined;
    let protocolVersion: 4 | 5 = values.protocol === '4' ? 4 : 5;
    let secrets: LinkSecrets = {};
    if (!url) {
      const config = cliConfig(values.config);
      // the daemon's user, password and TLS files: a broker that asks them of a publisher asks them of a reader
      secrets = cliSecrets(config, values.config);
      url = config.mqtt.url;
      prefix ??= config.mqtt.topicPrefix;
      if (values.protocol === undefined) protocolVersion = config.mqtt.protocolVersion;
    }
    prefix ??= 'edge-sensor';
    if (values.protocol !== undefined && values.protocol !== '4' && values.protocol !== '5') throw new CliError('--protocol expects 4 or 5', EXIT.USAGE);
    const watcher = new FleetWatcher();
    const out = (e: WatchEvent) => process.stdout.write((values.json ? printableJson(e) : formatWatchEvent(e)) + '\n');
    const opts: IClientOptions = {
      protocolVersion,
      clean: true,
      reconnectPeriod: 2000,
      connectTimeout: 10_000,
      clientId: `edge-sensor-watch-${process.pid}`,
      username: secrets.username,
      password: secrets.password,
      ...secrets.tls,
    };
    const client = connect(url, opts);
    // the cause of a failed connection is said once, until a connection works again
    const trouble = new Repeating(firstOnly);
    client.on('connect', () => {
      trouble.ended();
      process.stderr.write(`watching ${prefix}/+/readings, /status and /state on ${redactUrl(url)} (Ctrl-C to stop)\n`);
      client.subscribe([`${prefix}/+/readings`, `${prefix}/+/status`, `${prefix}/+/dropped`], { qos: 1 });
      // live values: QoS 0 as they are sent; the retained one of every device comes at once
      client.subscribe(`${prefix}/+/state`, { qos: 0 });
    });
    client.on('error', (err) => {
      if (trouble.occurred()) process.stderr.write(`watch: ${describeConnectError(err, protocolVersion)} (retrying)\n`);
    });
    client.on('message', (topic, payload, packet) => {
      const parts = topic.split('/');
      const kind = parts[parts.length - 1];
      const device = parts[parts.length - 2] ?? '?';
      try {
        if (kind === 'status') {
          if (payload.length) out(watcher.status(device, JSON.parse(payload.toString()) as Record<string, unknown>));
        } else if (kind === 'state') {
          if (payload.length) out(watcher.live(device, JSON.parse(payload.toString())));
        } else if (kind === 'dropped') {
          const d = JSON.parse(payload.toString()) as { ranges: Array<[number, number]>; reason?: string };
          out(watcher.dropped(device, d.ranges, d.reason));
        } else {
          const gz = packet.properties?.contentType === 'application/json+gzip' || (payload[0] === 0x1f && payload[1] === 0x8b);
          const batch = JSON.parse((gz ? gunzipSync(payload) : payload).toString()) as WireBatch;
          out(watcher.batch(device, batch, gz));
        }
      } catch (err) {
        out({ type: 'bad', device, at: Date.now(), error: (err as Error).message });
      }
    });
    return new Promise<number>((resolve) => {
      const stop = () => {
        client.end(true);
        resolve(EXIT.OK);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
