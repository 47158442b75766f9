// The collector benchmark's readings: DEVICES simulated devices, each with seqs 1..PER_DEVICE, in
// messages of BATCH readings that speak the daemon's payload contract. Deterministic, so that the
// collector and the reference loops store the very same rows.
import { createHash } from 'node:crypto';

const T0 = Date.parse('2026-11-01T00:00:00Z');
const hex = (n, w) => n.toString(16).padStart(w, '0');

export const deviceName = (d) => `bench-dev-${String(d).padStart(4, '0')}`;

/** A UUIDv7-shaped id, stable per (device, seq). */
export function readingId(d, seq) {
  const ms = T0 + seq * 1000;
  return `${hex(Math.floor(ms / 65536), 8)}-${hex(ms % 65536, 4)}-7${hex(d % 4096, 3)}-8${hex(seq % 4096, 3)}-${hex(seq, 12)}`;
}

export function batchId(d, first) {
  const h = createHash('md5').update(`${d}/${first}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** The readings of one message, as objects of the wire contract. */
export function readings(d, first, count) {
  const out = new Array(count);
  for (let i = 0; i < count; i++) {
    const seq = first + i;
    out[i] = { id: readingId(d, seq), seq, ts: new Date(T0 + seq * 1000).toISOString(), sensor: `sim-${seq % 10}`, value: Math.round((20 + Math.sin(seq / 50) * 5) * 1000) / 1000, unit: '°C' };
  }
  return out;
}

/** Every message of the backlog, devices interleaved (as a fleet publishes): {device, first, count}. */
export function* plan({ devices, perDevice, batch }) {
  for (let first = 1; first <= perDevice; first += batch) {
    for (let d = 0; d < devices; d++) yield { d, first, count: Math.min(batch, perDevice - first + 1) };
  }
}

export function payload(d, first, count) {
  return JSON.stringify({ device: deviceName(d), batch: batchId(d, first), readings: readings(d, first, count) });
}
