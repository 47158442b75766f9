import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { gunzipSync } from 'node:zlib';
import { connect, type MqttClient } from 'mqtt';
import { parseConfig } from '../config/load.js';
import { Daemon } from '../daemon.js';
import { EXIT } from '../exit-codes.js';
import { EmbeddedBroker } from '../demo/embedded-broker.js';
import { Store } from '../store/store.js';
import { fleetFilters } from '../topics.js';
import { buildStatus, formatStatus } from './snapshot.js';
import type { WireBatch } from '../sync/payload.js';
import { silentLogger } from '../util/logger.js';
import type { Command } from './command.js';

const MENU = `
  1) record a transaction     2) toggle online / offline     3) force a sync attempt
  4) show sync status         5) view the sync log           q) quit`;

/** Reads answers line by line; undefined at end of input (a pipe, Ctrl-D). */
function lineReader() {
  const rl = createInterface({ input: process.stdin, terminal: false });
  const queue: string[] = [];
  const waiting: Array<(l: string | undefined) => void> = [];
  let closed = false;
  rl.on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else queue.push(l);
  });
  rl.on('close', () => {
    closed = true;
    for (const w of waiting.splice(0)) w(undefined);
  });
  // Ctrl-C (or SIGTERM) quits like 'q': the daemon stops cleanly and the temporary folder goes;
  // a second one exits at once
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) process.exit(130);
    process.stdout.write('\n');
    rl.close();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    next(prompt: string): Promise<string | undefined> {
      process.stdout.write(prompt);
      const echo = (l: string | undefined) => {
        // piped input is not echoed by a terminal: show it so the transcript reads naturally
        if (!process.stdin.isTTY) process.stdout.write((l ?? '') + '\n');
        return l;
      };
      if (queue.length) return Promise.resolve(echo(queue.shift()));
      if (closed) return Promise.resolve(echo(undefined));
      return new Promise((resolve) => waiting.push((l) => resolve(echo(l))));
    },
    close: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      rl.close();
    },
  };
}

export const demoCommand: Command = {
  name: 'demo',
  usage: 'edge-sensor demo [--url mqtt://HOST:PORT] [--keep]   (--url: use that broker instead of the embedded one; --keep: keep the database)',
  options: { url: { type: 'string' }, keep: { type: 'boolean' } },
  async run(values) {
    const dir = mkdtempSync(join(tmpdir(), 'edge-sensor-demo-'));
    let broker: EmbeddedBroker | undefined;
    let url = values.url as string | undefined;
    if (!url) {
      broker = await new EmbeddedBroker().listen();
      url = broker.url;
    }
    const config = parseConfig({
      device: { id: 'demo' },
      database: { path: join(dir, 'demo.db') },
      mqtt: { url, topicPrefix: 'edge-sensor-demo', connectTimeoutMs: 3000 },
      sync: { batchSize: 20, intervalMs: 500, publishTimeoutMs: 3000, shutdownTimeoutMs: 1000, retry: { initialDelayMs: 500, maxDelayMs: 5000, maxAttempts: 5 } },
      status: { intervalMs: 5000 },
      sensors: [{ type: 'simulated', name: 'sim-temp', unit: '°C', schedule: '*/2 * * * * *', min: 18, max: 24, step: 0.2 }],
      retention: { syncedMaxAge: '1h' },
      log: { level: 'silent' },
    });
    const daemon = new Daemon(config, silentLogger());
    await daemon.start();

    // the broker side of the loop: what a consumer sees arrive
    const sub: MqttClient = connect(url, { clientId: `edge-sensor-demo-viewer-${process.pid}`, reconnectPeriod: 1000 });
    sub.on('error', () => {});
    sub.on('connect', () => sub.subscribe(fleetFilters('edge-sensor-demo').readings, { qos: 1 }));
    sub.on('message', (_t, payload, packet) => {
      try {
        const gz = packet.properties?.contentType === 'application/json+gzip';
        const b = JSON.parse((gz ? gunzipSync(payload) : payload).toString()) as WireBatch;
        const seqs = b.readings.map((r) => r.seq);
        const manual = b.readings.filter((r) => r.description !== undefined).map((r) => `"${r.description}" ${r.value}`);
        process.stdout.write(
          `\n  [broker] received ${b.readings.length} reading${b.readings.length === 1 ? '' : 's'} from ${b.device} (seq ${Math.min(...seqs)}-${Math.max(...seqs)})${manual.length ? `, incl. ${manual.join(', ')}` : ''}\n`,
        );
      } catch {
        /* not ours */
      }
    });

    // the demo reads and records through a connection of its own, as the CLI does beside a daemon
    const store = new Store(config.database.path);
    const ask = daemon.commands;
    const pending = () => store.countPending();
    process.stdout.write(
      [
        'edge-sensor demo: the store-and-forward loop in one terminal',
        `  database  ${config.database.path}`,
        `  broker    ${broker ? `embedded, ${url}` : url}`,
        '  a simulated thermometer writes a reading every 2 s; each one is in SQLite before anything',
        '  is sent, and is marked synced only when the broker acknowledges it.',
        '  Try: 2 (go offline), wait, 4 (the backlog grows), 2 (online: watch it drain).',
      ].join('\n') + '\n',
    );
    const input = lineReader();
    let online = true;
    for (;;) {
      process.stdout.write(MENU + '\n');
      const choice = (await input.next(`[${online ? 'online' : 'OFFLINE'}, ${pending()} pending] choice> `))?.trim().toLowerCase();
      if (choice === undefined || choice === 'q' || choice === 'quit' || choice === 'exit' || choice === '6') break;
      try {
        switch (choice) {
          case '1': {
            const raw = await input.next('  amount> ');
            if (raw === undefined) break;
            const amount = Number(raw);
            if (raw.trim() === '' || !Number.isFinite(amount)) {
              process.stdout.write(`  not a number: ${JSON.stringify(raw)}\n`);
              break;
            }
            const description = (await input.next('  description> ')) ?? '';
            const r = store.append([{ sensor: 'manual', value: amount, unit: null, description: description || null }]);
            process.stdout.write(`  recorded transaction seq ${r.firstSeq}: ${amount}${description ? ` "${description}"` : ''} (stored; pending until acknowledged)\n`);
            break;
          }
          case '2':
            online = !online;
            await ask[online ? 'online' : 'offline']();
            process.stdout.write(
              online
                ? `  ONLINE: reconnected; the backlog of ${pending()} pending readings drains now\n`
                : `  OFFLINE by choice: disconnected from the broker; readings pile up in SQLite (${pending()} pending)\n`,
            );
            break;
          case '3': {
            const r = await ask.sync({ timeoutMs: 5000 });
            process.stdout.write(r.ok ? `  sync: ${r.ackedRows} readings acknowledged by the broker; ${r.pendingLeft} pending\n` : `  sync not possible: ${r.reason} (${r.pendingLeft} pending)\n`);
            break;
          }
          case '4':
            process.stdout.write(
              formatStatus(buildStatus(store, ask.status()))
                .split('\n')
                .map((l) => '  ' + l)
                .join('\n') + '\n',
            );
            break;
          case '5': {
            const events = store.recentLog(10);
            if (events.length === 0) process.stdout.write('  (no sync events yet)\n');
            for (const e of events) process.stdout.write(`  ${e.timestamp}  ${e.event_type.padEnd(14)} ${JSON.stringify(e.details)}\n`);
            break;
          }
          case '':
            break;
          default:
            process.stdout.write(`  choose 1-5, or q to quit (got ${JSON.stringify(choice)})\n`);
        }
      } catch (err) {
        process.stdout.write(`  error: ${(err as Error).message}\n`);
      }
    }
    input.close();
    const left = pending();
    process.stdout.write('stopping the demo daemon\n');
    sub.end(true);
    store.close();
    await daemon.stop('demo finished');
    await broker?.close();
    if (values.keep) process.stdout.write(`database kept at ${config.database.path} (${left} readings still pending in it)\n`);
    else {
      rmSync(dir, { recursive: true, force: true });
      process.stdout.write(`temporary database removed${left ? ` with its ${left} pending readings` : ''} (--keep keeps it)\n`);
    }
    return EXIT.OK;
  },
};
