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
