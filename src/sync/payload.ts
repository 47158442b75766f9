import { FLAG_CLOCK_SUSPECT } from '../sensors/reading.js';
import type { PendingRow } from '../store/store.js';

const PLAIN_KEYS = ['device', 'batch', 'readings', 'id', 'seq', 'ts', 'sensor', 'value', 'unit'];

/**
 * The readings message, the public contract:
 * {"device":"pi-kitchen","batch":"<uuid>","readings":[{"id":"<uuidv7>","seq":1234,"ts":"...","sensor":"sim-temp","value":21.5,"unit":"°C"}]}
 * A manual transaction also carries "description"; a reading taken before the clock was set
 * carries "clock":"unsynced" (its ts is not trustworthy, its seq still is).
 */
export function encodeReadings(device: string, batch: string, rows: readonly PendingRow[]): string {
  // The usual batch has neither descriptions nor flags: its rows are serialised as they came
  // from the store, the key list picking the payload's fields in order, inside JSON.stringify
  // (no object per reading; the backlog drain's profile showed that loop).
  let plain = true;
  for (let i = 0; i < rows.length && plain; i++) plain = rows[i].description === null && (rows[i].flags & FLAG_CLOCK_SUSPECT) === 0;
  if (plain) return JSON.stringify({ device, batch, readings: rows }, PLAIN_KEYS);
  const readings = new Array(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i];
    const o: Record<string, unknown> = { id: r.id, seq: r.seq, ts: r.ts, sensor: r.sensor, value: r.value, unit: r.unit };
    if (r.description !== null) o.description = r.description;
    if (r.flags & FLAG_CLOCK_SUSPECT) o.clock = 'unsynced';
    readings[i] = o;
  }
  return JSON.stringify({ device, batch, readings });
}

/** A reading as it arrives at a consumer. */
export interface WireReading {
  id: string;
  seq: number;
  ts: string;
  sensor: string;
  value: number | null;
  unit: string | null;
  description?: string;
  clock?: 'unsynced';
}

export interface WireBatch {
  device: string;
  batch: string;
  readings: WireReading[];
}
