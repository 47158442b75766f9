import { isUtf8 } from 'node:buffer';
import { gunzipSync } from 'node:zlib';

/** Why a message was not stored: the `reason` column of rejected_messages (a public contract). */
export type RejectReason = 'invalid-json' | 'contract' | 'device-mismatch' | 'too-large' | 'conflicting-duplicate' | 'database-refused';

/** The readings of one message, column by column: the shape the database insert takes them in. */
export interface ReadingColumns {
  seq: number[];
  id: string[];
  ts: string[];
  sensor: string[];
  value: Array<number | null>;
  unit: Array<string | null>;
  description: Array<string | null>;
  clockUnsynced: boolean[];
}

/** Where a message came from, kept with it in case it must be recorded as rejected later (a conflict found by the store). */
interface Origin {
  topic: string;
  /** the payload as received, cut to limits.rejectedPayloadBytes (a view, not a copy) */
  payload: Buffer;
  payloadBytes: number;
}

export type Decoded =
  | (Origin & { kind: 'readings'; device: string; batch: string; readings: ReadingColumns; newestTsMs: number })
  | (Origin & { kind: 'status'; device: string; json: string; online: boolean | null; ts: string | null; pending: number | null; retained: boolean })
  | (Origin & { kind: 'dropped'; device: string; ranges: Array<[number, number]>; reasons: string[] })
  | Rejection
  | { kind: 'ignored'; why: string };

export interface Rejection extends Origin {
  kind: 'rejected';
  /** the device the topic names, when it names one */
  device: string | null;
  reason: RejectReason;
  detail: string;
}

export interface DecodeOptions {
  topicPrefix: string;
  maxMessageBytes: number;
  rejectedPayloadBytes: number;
}

export const GZIP_CONTENT_TYPE = 'application/json+gzip';
/** more readings than the daemon's largest batch (sync.batchSize max) */
const MAX_READINGS = 100_000;
const MAX_RANGES = 100_000;
const MAX_STATUS_BYTES = 64 * 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// what the daemon sends (toISOString) and any other ISO 8601 time with its offset; years 1-9999
// (PostgreSQL has no year 0, JavaScript does)
const ISO_TS = /^(?!0000)\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:?\d{2})$/;
const DEVICE_ID = /^[^/#+\s]{1,128}$/;

class ContractError extends Error {}

const fail = (msg: string): never => {
  throw new ContractError(msg);
};

/**
 * Turns one MQTT message into what the store takes, or a rejection with its reason. Pure: no I/O,
 * never throws, whatever the payload holds (any JSON value, any bytes).
 */
export function decodeMessage(topic: string, payload: Buffer, contentType: string | undefined, o: DecodeOptions, retained = false): Decoded {
  const rest = topic.startsWith(o.topicPrefix + '/') ? topic.slice(o.topicPrefix.length + 1).split('/') : [];
  const device = rest.length === 2 ? rest[0] : null;
  const kind = rest.length === 2 ? rest[1] : '';
  const origin: Origin = { topic, payload: payload.subarray(0, o.rejectedPayloadBytes), payloadBytes: payload.length };
  const reject = (reason: RejectReason, detail: string): Rejection => ({ kind: 'rejected', ...origin, device, reason, detail });
  if (device === null || !DEVICE_ID.test(device) || !['readings', 'status', 'dropped'].includes(kind)) {
    return reject('contract', `topic is not ${o.topicPrefix}/{device}/readings|status|dropped with a valid device id`);
  }
  if (payload.length === 0) {
    // an empty retained status is how a device's status is cleared from the broker
    return kind === 'status' ? { kind: 'ignored', why: 'empty status (retained message cleared)' } : reject('invalid-json', 'empty payload');
  }
  if (payload.length > o.maxMessageBytes) return reject('too-large', `${payload.length} bytes, more than limits.maxMessageBytes (${o.maxMessageBytes})`);

  let text: string;
  try {
    text = payloadText(payload, contentType, o.maxMessageBytes);
  } catch (err) {
    if (err instanceof RangeError) return reject('too-large', `more than limits.maxMessageBytes (${o.maxMessageBytes}) once decompressed`);
    return reject('invalid-json', (err as Error).message);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return reject('invalid-json', (err as Error).message.slice(0, 200));
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return reject('contract', 'expected a JSON object');
  const msg = value as Record<string, unknown>;
  if (msg.device !== undefined && msg.device !== device) {
    return reject('device-mismatch', `payload names device ${JSON.stringify(msg.device).slice(0, 140)}, the topic ${JSON.stringify(device)}`);
  }
  // PostgreSQL cannot store U+0000 in text or jsonb; JSON can only carry it escaped
  if (text.includes('\\u0000') && holdsNul(msg)) return reject('contract', 'a string holds U+0000, which PostgreSQL cannot store');
  try {
    switch (kind) {
      case 'readings':
        if (msg.device === undefined) fail('expected "device"');
        return { ...origin, ...decodeReadings(device, msg) };
      case 'dropped':
        return { ...origin, ...decodeDropped(device, msg) };
      default:
        if (text.length > MAX_STATUS_BYTES) return reject('too-large', `status of ${text.length} bytes, more than ${MAX_STATUS_BYTES}`);
        return {
          ...origin,
          kind: 'status',
          device,
          json: text,
          online: msg.state === 'online' ? true : msg.state === 'offline' ? false : null,
          ts: typeof msg.ts === 'string' && ISO_TS.test(msg.ts) && dayExists(msg.ts) ? msg.ts : null,
          pending: typeof msg.pending === 'number' && Number.isSafeInteger(msg.pending) && msg.pending >= 0 ? msg.pending : null,
          retained,
        };
    }
  } catch (err) {
    if (err instanceof ContractError) return reject('contract', err.message);
    return reject('contract', `unexpected: ${(err as Error).message}`);
  }
}

/** Gzip is recognised by its content type (MQTT 5) or its magic bytes: JSON text never starts with 0x1f. */
function payloadText(payload: Buffer, contentType: string | undefined, maxBytes: number): string {
  let bytes = payload;
  if (contentType === GZIP_CONTENT_TYPE || (payload[0] === 0x1f && payload[1] === 0x8b)) {
    try {
      bytes = gunzipSync(payload, { maxOutputLength: maxBytes });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new RangeError('too large');
      throw new Error(`not valid gzip: ${(err as Error).message}`);
    }
  }
  if (!isUtf8(bytes)) throw new Error('not valid UTF-8');
  return bytes.toString('utf8');
}

/** JavaScript takes 2026-02-31 for 3 March; PostgreSQL refuses it. */
function dayExists(ts: string): boolean {
  const day = Number(ts.slice(8, 10));
  if (day <= 28) return day >= 1;
  const y = Number(ts.slice(0, 4));
  const m = Number(ts.slice(5, 7));
  return m >= 1 && m <= 12 && day <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

function holdsNul(v: unknown): boolean {
  if (typeof v === 'string') return v.includes('\0');
  if (v === null || typeof v !== 'object') return false;
  for (const [k, x] of Object.entries(v)) if (k.includes('\0') || holdsNul(x)) return true;
  return false;
}

const str = (v: unknown, what: string, max: number): string => {
  if (typeof v !== 'string' || v.length === 0 || v.length > max) fail(`expected ${what} to be a string of 1-${max} characters`);
  return v as string;
};
const optStr = (v: unknown, what: string, max: number): string | null => (v === undefined || v === null ? null : str(v, what, max));

function decodeReadings(device: string, msg: Record<string, unknown>) {
  const batch = msg.batch;
  if (typeof batch !== 'string' || !UUID.test(batch)) fail('expected "batch" to be a UUID');
  const list = msg.readings;
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_READINGS) fail(`expected "readings" to be an array of 1-${MAX_READINGS} readings`);
  const rs = list as unknown[];
  const n = rs.length;
  const c: ReadingColumns = { seq: new Array(n), id: new Array(n), ts: new Array(n), sensor: new Array(n), value: new Array(n), unit: new Array(n), description: new Array(n), clockUnsynced: new Array(n) };
  let newest = -Infinity;
  let ascending = true;
  for (let i = 0; i < n; i++) {
    const r = rs[i];
    if (r === null || typeof r !== 'object' || Array.isArray(r)) fail(`readings[${i}]: expected an object`);
    const { id, seq, ts, sensor, value, unit, description, clock } = r as Record<string, unknown>;
    if (typeof id !== 'string' || !UUID.test(id)) fail(`readings[${i}].id: expected a UUID`);
    if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 1) fail(`readings[${i}].seq: expected a whole number >= 1`);
    if (typeof ts !== 'string' || !ISO_TS.test(ts)) fail(`readings[${i}].ts: expected an ISO 8601 time with its offset`);
    const t = Date.parse(ts as string);
    if (!Number.isFinite(t) || !dayExists(ts as string)) fail(`readings[${i}].ts: not a valid date`);
    if (value !== null && (typeof value !== 'number' || !Number.isFinite(value))) fail(`readings[${i}].value: expected a finite number or null`);
    if (clock !== undefined && clock !== 'unsynced') fail(`readings[${i}].clock: expected "unsynced" or nothing`);
    c.seq[i] = seq as number;
    c.id[i] = id as string;
    c.ts[i] = ts as string;
    c.sensor[i] = str(sensor, `readings[${i}].sensor`, 256);
    c.value[i] = value as number | null;
    c.unit[i] = optStr(unit, `readings[${i}].unit`, 256);
    c.description[i] = optStr(description, `readings[${i}].description`, 10_000);
    c.clockUnsynced[i] = clock === 'unsynced';
    if (t > newest) newest = t;
    if (i > 0 && (seq as number) <= c.seq[i - 1]) ascending = false;
  }
  // the daemon sends seqs in ascending order; anything else is checked for repeats the slow way
  if (!ascending && new Set(c.seq).size !== n) fail('a seq appears twice in one message');
  return { kind: 'readings' as const, device, batch: batch as string, readings: c, newestTsMs: newest };
}

function decodeDropped(device: string, msg: Record<string, unknown>) {
  const ranges = msg.ranges;
  if (!Array.isArray(ranges) || ranges.length === 0 || ranges.length > MAX_RANGES) fail(`expected "ranges" to be an array of 1-${MAX_RANGES} [from, to] pairs`);
  const out: Array<[number, number]> = [];
  for (const [i, r] of (ranges as unknown[]).entries()) {
    if (!Array.isArray(r) || r.length !== 2) fail(`ranges[${i}]: expected [from, to]`);
    const [a, b] = r as unknown[];
    if (typeof a !== 'number' || typeof b !== 'number' || !Number.isSafeInteger(a) || !Number.isSafeInteger(b) || a < 1 || b < a) {
      fail(`ranges[${i}]: expected whole numbers 1 <= from <= to`);
    }
    out.push([a as number, b as number]);
  }
  const reasons = Array.isArray(msg.reasons) ? (msg.reasons as unknown[]).filter((x): x is string => typeof x === 'string').map((x) => x.slice(0, 200)) : [];
  return { kind: 'dropped' as const, device, ranges: out, reasons };
}
