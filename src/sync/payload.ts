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
  // The usual batch has neither descriptions nor flags: its rows go to JSON.stringify as they came
  // from the store, a key list picking the payload's fields (no object per reading: docs/benchmarks.md, "Drain").
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

/** A reading as it arrives at a consumer: the stored row's fields, a description only when there is one, the clock flag as a word. */
export type WireReading = Pick<PendingRow, 'id' | 'seq' | 'ts' | 'sensor' | 'value' | 'unit'> & { description?: string; clock?: 'unsynced' };

export interface WireBatch {
  device: string;
  batch: string;
  readings: WireReading[];
}
