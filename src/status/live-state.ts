import { EventEmitter } from 'node:events';
import type { Logger } from '../util/logger.js';
import type { Tick } from '../sensors/reading.js';

/** One sensor's latest value in the state message (docs/mqtt-api.md#live-values). */
export interface LiveValue {
  value: number | null;
  unit: string | null;
  ts: string | null;
}

export interface LivePublisher {
  readonly connected: boolean;
  publish(topic: string, payload: string, opts: { retain?: boolean; qos?: 0 | 1 }, timeoutMs: number): Promise<void>;
  on(event: 'connect', fn: () => void): unknown;
}

export interface LiveStateOptions {
  topic: string;
  minIntervalMs: number;
  timeoutMs: number;
  /** reading names known from the config: present from the first message on (null until sampled) */
  expected: readonly string[];
}

/** names beyond the configured ones (auto-detected thermometers, `record` by hand) kept at most */
const MAX_NAMES = 256;

/**
 * The retained `state` message: the latest committed value of every sensor, for dashboards. Fed
 * by the storage keeper after each commit; coalesced to one message per minIntervalMs; sent
 * whenever the link is up, whatever the backlog. QoS 0, the link's live lane: it takes no slot of
 * the Receive Maximum, so it never waits behind a full batch window; one lost on a dropped
 * connection is replaced by the next sample, and sent again at every connect. It marks nothing synced.
 * Emits `names` when a reading name is seen for the first time (discovery announces it).
 */
export class LiveState extends EventEmitter<{ names: [names: string[]] }> {
  private readonly latest = new Map<string, LiveValue & { tsMs: number }>();
  private dirty = false;
  private timer?: NodeJS.Timeout;
  private lastSentAt = -Infinity;
  private stopped = false;
  private overflowWarned = false;
  published = 0;

  constructor(
    private readonly link: LivePublisher,
    private readonly opts: LiveStateOptions,
    /** false while offline by choice: nothing goes upstream then */
    private readonly allowed: () => boolean,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    for (const name of opts.expected) this.latest.set(name, { value: null, unit: null, ts: null, tsMs: -Infinity });
  }

  start(): void {
    this.link.on('connect', () => this.kick());
  }

  /** Takes the newest value of each sensor from committed ticks. */
  update(ticks: readonly Tick[]): void {
    const fresh: string[] = [];
    for (const t of ticks) {
      for (const r of t.readings) {
        const old = this.latest.get(r.sensor);
        // a late tick (a slow sensor) must not replace a newer value
        if (old && old.tsMs > t.tsMs) continue;
        if (!old) {
          if (this.latest.size >= MAX_NAMES) {
            if (!this.overflowWarned) this.log.warn({ sensor: r.sensor, max: MAX_NAMES }, 'live state holds the most sensors it may; values of new ones are left out');
            this.overflowWarned = true;
            continue;
          }
          fresh.push(r.sensor);
        }
        this.latest.set(r.sensor, { value: r.value, unit: r.unit, ts: new Date(t.tsMs).toISOString(), tsMs: t.tsMs });
      }
    }
    if (fresh.length > 0) this.emit('names', fresh);
    this.dirty = true;
    this.schedule();
  }

  /** Sends the state again soon (a new connection, back online by choice). */
  kick(): void {
    if (this.latest.size === 0 || [...this.latest.values()].every((v) => v.ts === null)) return;
    this.dirty = true;
    this.schedule();
  }

  /** The message as it is sent: `{ "<reading name>": { value, unit, ts }, ... }`. */
  payload(): Record<string, LiveValue> {
    return Object.fromEntries([...this.latest].map(([name, { value, unit, ts }]) => [name, { value, unit, ts }]));
  }

  private schedule(): void {
    if (this.timer || this.stopped) return;
    const wait = Math.max(0, this.lastSentAt + this.opts.minIntervalMs - this.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.flush();
    }, wait);
  }

  private async flush(): Promise<void> {
    // not connected: kept dirty, the next connect sends it
    if (!this.dirty || this.stopped || !this.link.connected || !this.allowed()) return;
    this.dirty = false;
    this.lastSentAt = this.now();
    try {
      await this.link.publish(this.opts.topic, JSON.stringify(this.payload()), { retain: true, qos: 0 }, this.opts.timeoutMs);
      this.published++;
    } catch (err) {
      this.dirty = true;
      this.log.debug({ err: (err as Error).message }, 'live state not sent; the next sample or connection sends it');
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }
}
