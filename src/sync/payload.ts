import { FLAG_CLOCK_SUSPECT, type PendingRow } from '../store/store.js';

/**
 * The readings message, the public contract:
 * {"device":"pi-kitchen","batch":"<uuid>","readings":[{"id":"<uuidv7>","seq":1234,"ts":"...","sensor":"sim-temp","value":21.5,"unit":"°C"}]}
 * A manual transaction also carries "description"; a reading taken before the clock was set
 * carries "clock":"unsynced" (its ts is not trustworthy, its seq still is).
 */
export function encodeReadings(device: string, batch: string, rows: readonly PendingRow[]): string {
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
