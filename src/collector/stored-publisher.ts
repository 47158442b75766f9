import type { Logger } from '../util/logger.js';
import { firstOnly, Repeating } from '../util/log-throttle.js';
import { PublishRejectedError } from '../mqtt/errors.js';
import { deviceTopics } from '../topics.js';
import type { StoredState } from './pg/fleet.js';

/** What the publisher reads: each device's stored state, many devices per query. */
export interface StoredStateSource {
  storedState(devices: readonly string[], limit: number): Promise<StoredState[]>;
}

/** Where it publishes: the collector's own broker connection. */
export interface StoredSink {
  readonly connected: boolean;
  publish(topic: string, payload: string, opts: { retain?: boolean }, timeoutMs: number): Promise<void>;
}

export interface StoredPublisherOptions {
  topicPrefix: string;
  /** a device gets at most one `stored` message per this (changes in between are coalesced) */
  intervalMs: number;
  /** readings the device says the broker acknowledged, above everything stored, for this long: asked for as missing */
  tailWindowMs: number;
  /** an unchanged `stored` that still asks for something is published again after this (the last one may be lost) */
  republishMs: number;
  /** missing ranges per message at most (lowest first; the rest follow once these are filled) */
  maxRanges: number;
  publishTimeoutMs: number;
}

/** devices looked at per query */
const CHUNK = 2000;

/**
 * Tells each device what the collector stored (issue 16): the retained
 * `{prefix}/{device}/stored` `{"through","missing","ts"}`. Cheap for thousands of devices: one set
 * of changed devices and one timer; at each tick one query for all due devices and a publish for
 * each whose answer changed. A device is looked at again without a change when an open gap comes
 * of age (the reorder window), when a tail gap does (below), and while it is asked for something.
 *
 * A tail gap: the broker lost the newest readings and the device then went quiet, so that no later
 * reading reveals the hole. The device's status says the highest seq the broker acknowledged; once
 * that stays above everything stored for tailWindowMs, the range in between is asked for too.
 */
export class StoredPublisher {
  private readonly dirty = new Set<string>();
  private readonly recheck = new Map<string, number>();
  private readonly last = new Map<string, { body: string; at: number }>();
  private readonly tails = new Map<string, { syncedThrough: number; since: number }>();
  private timer?: NodeJS.Timeout;
  private busy = false;
  private readonly refused = new Repeating(firstOnly);
  private readonly failing = new Repeating(firstOnly);
  readonly stats = { published: 0, failed: 0 };

  constructor(
    private readonly source: StoredStateSource,
    private readonly sink: StoredSink,
    private readonly opts: StoredPublisherOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** A transaction changed these devices' readings, drops or status. */
  changed(devices: readonly string[]): void {
    for (const d of devices) this.dirty.add(d);
  }

  /** A new connection to the broker: it may have lost its retained messages (a kill), so every device is told again. */
  reconnected(): void {
    for (const d of this.last.keys()) this.dirty.add(d);
    this.last.clear();
  }

  /** One round: every due device looked at, changed answers published. Never throws. */
  async tick(): Promise<number> {
    if (this.busy || !this.sink.connected) return 0;
    this.busy = true;
    let sent = 0;
    try {
      const t = this.now();
      const due = new Set(this.dirty);
      for (const [d, at] of this.recheck) if (at <= t) due.add(d);
      const devices = [...due].sort();
      for (let i = 0; i < devices.length; i += CHUNK) {
        const part = devices.slice(i, i + CHUNK);
        for (const d of part) {
          this.dirty.delete(d);
          this.recheck.delete(d);
        }
        let states: StoredState[];
        try {
          states = await this.source.storedState(part, this.opts.maxRanges);
        } catch (err) {
          for (const d of part) this.dirty.add(d);
          if (this.failing.occurred()) this.log.warn({ err: (err as Error).message }, 'cannot read what is stored to tell the devices; trying again');
          return sent;
        }
        this.failing.ended();
        const results = await Promise.all(states.map((s) => this.answer(s, this.now())));
        sent += results.filter(Boolean).length;
      }
    } finally {
      this.busy = false;
    }
    return sent;
  }

  /** Publishes one device's answer when it changed (or still asks for something and is due again). */
  private async answer(s: StoredState, t: number): Promise<boolean> {
    const missing = s.missing.slice(0, this.opts.maxRanges);
    const tail = this.tail(s, t);
    if (tail && missing.length < this.opts.maxRanges) missing.push(tail);
    let next = Infinity;
    if (s.youngDueInMs !== null) next = t + s.youngDueInMs + 50;
    const tailState = this.tails.get(s.device);
    if (tailState && !tail) next = Math.min(next, tailState.since + this.opts.tailWindowMs + 50);
    if (missing.length > 0) next = Math.min(next, t + this.opts.republishMs);
    if (next !== Infinity) this.recheck.set(s.device, next);

    const body = JSON.stringify({ through: s.through, missing });
    const prev = this.last.get(s.device);
    if (prev && prev.body === body && (missing.length === 0 || t - prev.at < this.opts.republishMs)) return false;
    const payload = `${body.slice(0, -1)},"ts":${JSON.stringify(new Date(t).toISOString())}}`;
    try {
      await this.sink.publish(deviceTopics(this.opts.topicPrefix, s.device).stored, payload, { retain: true }, this.opts.publishTimeoutMs);
      this.last.set(s.device, { body, at: t });
      this.stats.published++;
      this.refused.ended();
      return true;
    } catch (err) {
      this.stats.failed++;
      if (err instanceof PublishRejectedError) {
        if (this.refused.occurred()) this.log.error({ err: err.message, device: s.device }, "the broker refused a stored message: the collector's user must be allowed to publish {prefix}/+/stored (see docs/collector.md)");
      } else {
        this.dirty.add(s.device); // told again on the next tick
      }
      return false;
    }
  }

  /** The tail range [accounted + 1, syncedThrough] once it has been open for tailWindowMs. */
  private tail(s: StoredState, t: number): [number, number] | undefined {
    const x = s.syncedThrough;
    if (x === null || x <= s.accounted) {
      this.tails.delete(s.device);
      return undefined;
    }
    const prev = this.tails.get(s.device);
    // the hole counts from when it was first seen, as long as what was stored has not caught up with it
    const since = prev && prev.syncedThrough > s.accounted ? prev.since : t;
    this.tails.set(s.device, { syncedThrough: x, since });
    return t - since >= this.opts.tailWindowMs ? [s.accounted + 1, x] : undefined;
  }
}
