import type { WireBatch } from '../sync/payload.js';

export type WatchEvent =
  | { type: 'status'; device: string; at: number; status: Record<string, unknown> }
  | {
      type: 'batch';
      device: string;
      at: number;
      rows: number;
      firstSeq: number;
      lastSeq: number;
      /** from the newest reading's ts to arrival */
      delayMs: number;
      /** from the oldest reading's ts to arrival: how old the backlog was */
      maxDelayMs: number;
      duplicates: number;
      /** readings that arrived after a later seq: a gap closed */
      filled: number;
      newGaps: Array<[number, number]>;
      openGapReadings: number;
      compressed: boolean;
    }
  | { type: 'dropped'; device: string; at: number; ranges: Array<[number, number]>; count: number; reason?: string }
  | { type: 'bad'; device: string; at: number; error: string }
  /** the device's live values (its retained `state` message), as sent: untrusted, printed through printable() */
  | { type: 'state'; device: string; at: number; values: LiveEntry[]; more: number };

export interface LiveEntry {
  name: string;
  value: unknown;
  unit: unknown;
  /** from the value's ts to arrival; null without a usable ts */
  ageMs: number | null;
}

/** entries of one state message shown at most (a hostile device could send thousands) */
const LIVE_SHOWN = 40;

interface DeviceState {
  maxSeq: number;
  seen: Set<number>;
  gaps: Array<[number, number]>;
  readings: number;
  duplicates: number;
}

// how far below the newest seq a device's seen-set reaches: bounded memory for long watches
const SEEN_WINDOW = 1_000_000;

/**
 * Follows every device of a fleet from what reaches the broker: per device the highest seq,
 * which seqs were seen (to flag duplicates) and which are missing (gaps, closed when late
 * readings arrive after a fault). Pure logic; the CLI feeds it MQTT messages.
 */
export class FleetWatcher {
  readonly devices = new Map<string, DeviceState>();

  constructor(private readonly now: () => number = Date.now) {}

  private state(device: string): DeviceState {
    let s = this.devices.get(device);
    if (!s) {
      s = { maxSeq: 0, seen: new Set(), gaps: [], readings: 0, duplicates: 0 };
      this.devices.set(device, s);
    }
    return s;
  }

  /** A state message: `{ name: { value, unit, ts } }`; anything else is reported as unreadable. */
  live(device: string, payload: unknown): WatchEvent {
    const at = this.now();
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return { type: 'bad', device, at, error: 'state message is not a JSON object' };
    const entries = Object.entries(payload as Record<string, unknown>);
    const values = entries.slice(0, LIVE_SHOWN).map(([name, v]): LiveEntry => {
      const o = v !== null && typeof v === 'object' ? (v as Record<string, unknown>) : {};
      const ts = typeof o.ts === 'string' ? Date.parse(o.ts) : NaN;
      return { name, value: o.value ?? null, unit: o.unit ?? null, ageMs: Number.isFinite(ts) ? at - ts : null };
    });
    return { type: 'state', device, at, values, more: entries.length - values.length };
  }

  status(device: string, status: Record<string, unknown>): WatchEvent {
    this.state(device);
    return { type: 'status', device, at: this.now(), status };
  }

  batch(topicDevice: string, batch: WireBatch, compressed = false): WatchEvent {
    const device = batch.device ?? topicDevice;
    const s = this.state(device);
    const at = this.now();
    let duplicates = 0;
    let filled = 0;
    const newGaps: Array<[number, number]> = [];
    let first = Infinity;
    let last = -Infinity;
    let newest = -Infinity;
    let oldest = Infinity;
    for (const r of batch.readings) {
      const seq = r.seq;
      first = Math.min(first, seq);
      last = Math.max(last, seq);
      const t = Date.parse(r.ts);
      if (Number.isFinite(t)) {
        newest = Math.max(newest, t);
        oldest = Math.min(oldest, t);
      }
      s.readings++;
      if (s.seen.has(seq)) {
        duplicates++;
        continue;
      }
      s.seen.add(seq);
      if (s.maxSeq === 0) {
        s.maxSeq = seq; // the first reading we see starts the device's history
      } else if (seq > s.maxSeq) {
        if (seq > s.maxSeq + 1) {
          const gap: [number, number] = [s.maxSeq + 1, seq - 1];
          s.gaps.push(gap);
          newGaps.push(gap);
        }
        s.maxSeq = seq;
      } else if (this.closeGap(s, seq)) {
        filled++;
      }
    }
    s.duplicates += duplicates;
    if (s.seen.size > SEEN_WINDOW * 1.2) {
      const floor = s.maxSeq - SEEN_WINDOW;
      for (const q of s.seen) if (q < floor) s.seen.delete(q);
    }
    return {
      type: 'batch',
      device,
      at,
      rows: batch.readings.length,
      firstSeq: first,
      lastSeq: last,
      delayMs: Number.isFinite(newest) ? at - newest : 0,
      maxDelayMs: Number.isFinite(oldest) ? at - oldest : 0,
      duplicates,
      filled,
      newGaps,
      openGapReadings: s.gaps.reduce((n, [a, b]) => n + b - a + 1, 0),
      compressed,
    };
  }

  /** A device announced readings it had to drop (disk cap): their gap is explained, not pending. */
  dropped(device: string, ranges: Array<[number, number]>, reason?: string): WatchEvent {
    const s = this.state(device);
    let count = 0;
    for (const [a, b] of ranges) {
      count += b - a + 1;
      for (let q = a; q <= b && b - a < 1_000_000; q++) this.closeGap(s, q);
    }
    return { type: 'dropped', device, at: this.now(), ranges, count, reason };
  }

  private closeGap(s: DeviceState, seq: number): boolean {
    for (let i = 0; i < s.gaps.length; i++) {
      const [a, b] = s.gaps[i];
      if (seq < a || seq > b) continue;
      if (a === b) s.gaps.splice(i, 1);
      else if (seq === a) s.gaps[i] = [a + 1, b];
      else if (seq === b) s.gaps[i] = [a, b - 1];
      else s.gaps.splice(i, 1, [a, seq - 1], [seq + 1, b]);
      return true;
    }
    return false;
  }
}
