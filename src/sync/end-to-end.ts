import { z } from 'zod';
import type { Logger } from '../util/logger.js';
import type { LinkMessage } from '../mqtt/link.js';
import { RateLimiter } from '../util/rate-limit.js';
import { firstOnly, Repeating } from '../util/log-throttle.js';
import type { ResendResult } from '../store/confirmations.js';

/** What the end-to-end side needs from the store (src/store/confirmations.ts). */
export interface ConfirmationStore {
  storedThrough(): number;
  setStoredThrough(seq: number): void;
  highestSynced(): number;
  /** the highest seq given to a reading: a range above it is nobody's */
  lastSeq(): number;
  unconfirmed(through: number): number;
  resend(from: number, to: number, limit: number, reason: string): ResendResult;
}

/** The link as seen from here: one subscription, its messages. */
export interface StoredSubscriber {
  subscribe(filter: string, qos: 0 | 1): void;
  on(event: 'message', fn: (m: LinkMessage) => void): unknown;
}

export interface EndToEndOptions {
  /** the device's own `{prefix}/{device}/stored` topic: the only one listened to */
  topic: string;
  resendPerMinute: number;
}

export interface EndToEndView {
  /** every reading up to this seq is stored by the collector (or accounted for as dropped), by its last word */
  storedThrough: number;
  /** the highest seq the broker acknowledged */
  syncedThrough: number;
  /** readings acknowledged by the broker and not yet confirmed stored */
  unconfirmed: number;
}

/** A `stored` payload is small; anything bigger is not the collector's. */
const MAX_PAYLOAD_BYTES = 64 * 1024;
/** ranges acted on per message at most (the collector sends at most 100) */
const MAX_RANGES = 1000;
/** a range just sent again is not sent again for this long: a `stored` computed before the resend arrived may still come */
const COOLDOWN_MS = 20_000;
/** how often a request held back by the rate limit is looked at again */
const RETRY_MS = 2000;
const REASON = 'asked for again, no longer on the device';

const seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const storedSchema = z.object({
  through: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  missing: z
    .array(z.tuple([seq, seq]).refine(([a, b]) => a <= b, 'expected from <= to'))
    .max(MAX_RANGES)
    .default([]),
  ts: z.string().max(64).optional(),
});

type Range = [number, number];

/**
 * The device's end of the end-to-end acknowledgement (sync.endToEnd, issue 16). It listens to its
 * own retained `stored` topic only; the collector's word is untrusted input:
 *  - `through` is saved and held by retention (synced rows above it are not deleted by age): a
 *    wrong or forged value can only delay a deletion, never bring one forward;
 *  - `missing` ranges go back to pending where the rows are still here (at most resendPerMinute
 *    readings a minute), and what is no longer here is announced as dropped, so that the loss is
 *    accounted for upstream.
 */
export class EndToEnd {
  private readonly limiter: RateLimiter;
  /** ranges asked for and not yet handled (held back by the rate limit) */
  private outstanding: Range[] = [];
  private readonly cooling: Array<{ range: Range; until: number }> = [];
  private timer?: NodeJS.Timeout;
  private readonly limited = new Repeating(firstOnly);
  private readonly invalid = new Repeating(firstOnly);
  private syncedAtStart = 0;
  private stopped = false;
  private stored = 0;
  readonly stats = { messages: 0, invalid: 0, requeued: 0, absentRanges: 0 };

  constructor(
    private readonly deps: {
      store: ConfirmationStore;
      link: StoredSubscriber;
      sync: { rewind(): void; readonly stats: { highestAckedSeq?: number } };
      announcer: { announce(): Promise<number>; announceSoon(delayMs: number): void };
    },
    private readonly opts: EndToEndOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.limiter = new RateLimiter(opts.resendPerMinute, 60_000 / opts.resendPerMinute, now);
    this.stored = deps.store.storedThrough();
  }

  start(): void {
    this.syncedAtStart = this.deps.store.highestSynced();
    this.deps.link.on('message', (m) => {
      if (m.topic === this.opts.topic) this.onMessage(m.payload);
    });
    this.deps.link.subscribe(this.opts.topic, 1);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /** The collector's last word, as saved (retention holds synced rows above it). */
  get storedThrough(): number {
    return this.stored;
  }

  view(): EndToEndView {
    const storedThrough = this.stored;
    return {
      storedThrough,
      syncedThrough: Math.max(this.syncedAtStart, this.deps.sync.stats.highestAckedSeq ?? 0),
      unconfirmed: this.deps.store.unconfirmed(storedThrough),
    };
  }

  /** One `stored` message. Never throws. */
  onMessage(payload: Buffer): void {
    // an empty retained message is how a retained topic is cleared
    if (payload.length === 0 || this.stopped) return;
    let msg: z.output<typeof storedSchema>;
    try {
      if (payload.length > MAX_PAYLOAD_BYTES) throw new Error(`${payload.length} bytes, more than ${MAX_PAYLOAD_BYTES}`);
      const r = storedSchema.safeParse(JSON.parse(payload.toString('utf8')));
      if (!r.success) throw new Error(r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(message)'}: ${i.message}`).join('; '));
      msg = r.data;
    } catch (err) {
      this.stats.invalid++;
      if (this.invalid.occurred()) this.log.warn({ topic: this.opts.topic, err: (err as Error).message.slice(0, 300) }, 'ignoring a stored message that is not valid (counted; said once)');
      return;
    }
    this.invalid.ended();
    this.stats.messages++;
    try {
      if (msg.through !== this.stored) {
        this.deps.store.setStoredThrough(msg.through);
        this.stored = msg.through;
      }
      this.outstanding = this.wanted(msg.missing);
      this.work();
    } catch (err) {
      // a full disk: the next message says the same again
      this.log.warn({ err }, 'cannot act on a stored message');
    }
  }

  /** The ranges of a request worth acting on: merged, within the seqs this device gave, not just sent again. */
  private wanted(missing: ReadonlyArray<readonly [number, number]>): Range[] {
    const last = this.deps.store.lastSeq();
    const t = this.now();
    for (let i = this.cooling.length - 1; i >= 0; i--) if (this.cooling[i].until <= t) this.cooling.splice(i, 1);
    const merged = merge(missing.map(([a, b]): Range => [a, Math.min(b, last)]).filter(([a, b]) => a <= b));
    return subtract(merged, merge(this.cooling.map((c) => c.range)));
  }

  /** Handles what the rate limit allows now; the rest waits for the next look (RETRY_MS). */
  private work(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    let requeued = 0;
    let absent = 0;
    const left: Range[] = [];
    for (const [a, b] of this.outstanding) {
      const budget = this.limiter.available();
      if (budget === 0) {
        left.push([a, b]);
        continue;
      }
      const r = this.deps.store.resend(a, b, budget, REASON);
      this.limiter.take(r.requeued);
      requeued += r.requeued;
      absent += r.absent.length;
      if (r.doneThrough >= a) this.cool([a, r.doneThrough]);
      if (r.doneThrough < b) left.push([r.doneThrough + 1, b]);
    }
    this.outstanding = left;
    this.stats.requeued += requeued;
    this.stats.absentRanges += absent;
    if (requeued > 0) this.deps.sync.rewind();
    if (absent > 0) {
      void this.deps.announcer.announce();
      // an announcement already under way may have read the drop records before these were added
      this.deps.announcer.announceSoon(2000);
    }
    if (requeued > 0 || absent > 0) this.log.info({ requeued, absentRanges: absent, waiting: left.length }, 'the collector asked for readings again');
    if (left.length > 0) {
      const readings = left.reduce((n, [a, b]) => n + b - a + 1, 0);
      if (this.limited.occurred()) this.log.warn({ ranges: left.length, upTo: readings, resendPerMinute: this.opts.resendPerMinute }, 'more asked for again than sync.resendPerMinute allows: the rest waits');
      this.timer = setTimeout(() => {
        try {
          this.work();
        } catch (err) {
          this.log.warn({ err }, 'cannot act on a stored message');
        }
      }, RETRY_MS);
      this.timer.unref();
    } else {
      this.limited.ended();
    }
  }

  private cool(range: Range): void {
    this.cooling.push({ range, until: this.now() + COOLDOWN_MS });
    if (this.cooling.length > MAX_RANGES) this.cooling.shift();
  }
}

function merge(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1] + 1) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** `ranges` minus `cut` (both sorted, merged). */
function subtract(ranges: readonly Range[], cut: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const [a0, b] of ranges) {
    let a = a0;
    for (const [c, d] of cut) {
      if (d < a || c > b) continue;
      if (c > a) out.push([a, c - 1]);
      a = Math.max(a, d + 1);
      if (a > b) break;
    }
    if (a <= b) out.push([a, b]);
  }
  return out;
}
