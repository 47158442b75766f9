import mqttPacket from 'mqtt-packet';
import { connect, type MqttClient } from 'mqtt';
import { gzipSync } from 'node:zlib';
import type { FaultProxy } from '../helpers/proxy.js';
import { spawnCli, waitFor, type Spawned } from '../helpers/process.js';
import { writeConfig } from '../helpers/tmp.js';
import { randomUUID } from 'node:crypto';
import { decodeMessage, type Decoded } from '../../src/collector/decode.js';
import { PgStore, type StoreItem } from '../../src/collector/pg/store.js';
import { silentLogger } from '../../src/util/logger.js';

export const PREFIX = 'es';
const decodeOpts = { topicPrefix: PREFIX, maxMessageBytes: 16 * 1024 * 1024, rejectedPayloadBytes: 65_536 };

/** The id a simulated device gives its reading `seq` (stable, so that a resend carries the same id). */
export const idOf = (device: string, seq: number, variant = 0) => {
  let h = variant;
  for (const ch of device) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `${h.toString(16).padStart(8, '0')}-0000-7000-8000-${seq.toString(16).padStart(12, '0')}`;
};

/** A readings message of the daemon's contract for seqs from..to. */
export function readingsPayload(device: string, seqs: number[], opts: { variant?: number; batch?: string; tsMs?: number } = {}): string {
  const t = opts.tsMs ?? Date.parse('2026-11-26T10:00:00Z');
  return JSON.stringify({
    device,
    batch: opts.batch ?? randomUUID(),
    readings: seqs.map((seq) => ({ id: idOf(device, seq, opts.variant), seq, ts: new Date(t + seq * 1000).toISOString(), sensor: 'sim', value: seq / 4, unit: 'C' })),
  });
}

export const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

export function decoded(topic: string, payload: string | Buffer): Decoded {
  return decodeMessage(topic, Buffer.isBuffer(payload) ? payload : Buffer.from(payload), undefined, decodeOpts);
}

export function item(topic: string, payload: string | Buffer): StoreItem {
  const d = decoded(topic, payload);
  if (d.kind === 'ignored') throw new Error('ignored message');
  return d;
}

export const readingsItem = (device: string, seqs: number[], opts?: Parameters<typeof readingsPayload>[2]) => item(`${PREFIX}/${device}/readings`, readingsPayload(device, seqs, opts));

export function store(url: string, schema: string, reorderWindowMs = 5000): PgStore {
  return new PgStore({ url, schema, connectTimeoutMs: 3000, statementTimeoutMs: 10_000, lockTimeoutMs: 5000, reorderWindowMs }, silentLogger());
}

// ---- a collector process, a simulated device, and a tap on the collector's PUBACKs ----


export interface CollectorFiles {
  path: string;
  args: string[];
}

export function collectorConfig(dir: string, name: string, o: { url: string; pgUrl: string; schema: string; prefix?: string; shareGroup?: string; protocolVersion?: 4 | 5; extra?: Record<string, unknown> }): CollectorFiles {
  const { mqtt: extraMqtt, postgres: extraPg, ...rest } = (o.extra ?? {}) as { mqtt?: object; postgres?: object };
  const path = writeConfig(dir, {
    mqtt: { url: o.url, topicPrefix: o.prefix ?? PREFIX, clientId: `col-${name}`, protocolVersion: o.protocolVersion ?? 5, keepaliveSec: 10, ...(o.shareGroup ? { shareGroup: o.shareGroup } : {}), ...extraMqtt },
    postgres: { url: o.pgUrl, schema: o.schema, connectTimeoutMs: 2000, statementTimeoutMs: 10_000, ...extraPg },
    gaps: { reorderWindowMs: 1000 },
    log: { level: 'info' },
    ...rest,
  }, `collector-${name}.yaml`);
  return { path, args: ['--config', path] };
}

const running = new Set<Spawned>();

/** Kills (SIGKILL) every process started here that still runs: for afterAll, after a failed test. */
export async function killLeftovers(): Promise<void> {
  for (const p of running) {
    if (p.child.exitCode === null && p.child.signalCode === null) {
      p.child.kill('SIGKILL');
      await p.exited;
    }
  }
  running.clear();
}

/** Remembers a process for killLeftovers. */
export function remember(p: Spawned): Spawned {
  running.add(p);
  return p;
}

/** `edge-sensor collect`, resolved once it has subscribed. */
export async function startCollector(c: CollectorFiles, env: NodeJS.ProcessEnv = {}): Promise<Spawned> {
  const p = remember(spawnCli(['collect', ...c.args], env));
  await waitFor(() => {
    if (p.child.exitCode !== null) throw new Error(`collector exited ${p.child.exitCode}: ${p.stderr()} ${p.stdout()}`);
    return p.logLines().some((l) => l.msg === 'subscribed');
  }, 20_000, 'collector subscribed');
  return p;
}

export async function stopCollector(p: Spawned): Promise<number | null> {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return p.child.exitCode;
  p.child.kill('SIGTERM');
  return (await p.exited).code;
}

/** A simulated device: publishes contract messages QoS 1 (resolved on the broker's PUBACK). */
export class FakeDevice {
  private constructor(
    readonly client: MqttClient,
    readonly name: string,
    readonly prefix: string,
  ) {}

  static async connect(url: string, name: string, prefix = PREFIX, protocolVersion: 4 | 5 = 5): Promise<FakeDevice> {
    const client = connect(url, { protocolVersion, clientId: `dev-${Buffer.from(name).toString('hex').slice(0, 24)}-${Math.random().toString(36).slice(2, 7)}`, reconnectPeriod: 500 });
    client.on('error', () => {});
    await waitFor(() => client.connected, 10_000, `device ${name} connected`);
    return new FakeDevice(client, name, prefix);
  }

  async readings(seqs: number[], opts: Parameters<typeof readingsPayload>[2] & { gzip?: boolean } = {}): Promise<void> {
    const text = readingsPayload(this.name, seqs, opts);
    const props = opts.gzip && this.client.options.protocolVersion === 5 ? { properties: { contentType: 'application/json+gzip' } } : {};
    await this.client.publishAsync(`${this.prefix}/${this.name}/readings`, opts.gzip ? gzipSync(text) : text, { qos: 1, ...props });
  }

  async raw(kind: string, payload: string | Buffer, retain = false): Promise<void> {
    await this.client.publishAsync(`${this.prefix}/${this.name}/${kind}`, payload, { qos: 1, retain });
  }

  async end(): Promise<void> {
    await this.client.endAsync();
  }
}

export interface Ack {
  at: number;
  topic: string;
  payload: Buffer;
}

/**
 * Reads the MQTT packets between a collector and the broker (through a FaultProxy): which
 * PUBLISH each PUBACK of the collector answers, and when it was sent.
 */
export class AckTap {
  readonly acks: Ack[] = [];
  readonly delivered: Array<{ at: number; topic: string; payload: Buffer }> = [];
  private readonly conns = new Map<number, { up: ReturnType<typeof mqttPacket.parser>; down: ReturnType<typeof mqttPacket.parser>; inFlight: Map<number, { topic: string; payload: Buffer }> }>();

  constructor(private readonly protocolVersion: 4 | 5 = 5) {}

  attach(proxy: FaultProxy): this {
    proxy.tap = (id, from, data) => {
      let c = this.conns.get(id);
      if (!c) {
        c = { up: mqttPacket.parser({ protocolVersion: this.protocolVersion }), down: mqttPacket.parser({ protocolVersion: this.protocolVersion }), inFlight: new Map() };
        const conn = c;
        conn.down.on('packet', (p) => {
          if (p.cmd !== 'publish' || !p.messageId) return;
          const m = { topic: p.topic, payload: Buffer.from(p.payload) };
          conn.inFlight.set(p.messageId, m);
          this.delivered.push({ at: Date.now(), ...m });
        });
        conn.up.on('packet', (p) => {
          if (p.cmd !== 'puback' || !p.messageId) return;
          const m = conn.inFlight.get(p.messageId);
          conn.inFlight.delete(p.messageId);
          if (m) this.acks.push({ at: Date.now(), ...m });
        });
        conn.up.on('error', () => {});
        conn.down.on('error', () => {});
        this.conns.set(id, c);
      }
      (from === 'client' ? c.up : c.down).parse(data);
    };
    return this;
  }

  acked(pred: (a: Ack) => boolean): boolean {
    return this.acks.some(pred);
  }
}
