/**
 * How often a problem that repeats (every tick, every attempt) is logged: the journal, and the SD
 * card under it, shows that it started, how often it happened and that it ended, without a line
 * per occurrence. Every such rule in the daemon is one of the policies below.
 */

/** Whether the problem's count, now `n` after `added` more occurrences, deserves a line. */
export type LogPolicy = (n: number, added?: number) => boolean;

/** The first occurrence only: a state (a device absent, the broker unreachable) said once until it ends. */
export const firstOnly: LogPolicy = (n, added = 1) => n - added === 0;

/** The 1st, 10th, 100th, 1000th…: a flaky device shows with its count for weeks without flooding the log. */
export const powersOfTen: LogPolicy = (n, added = 1) => {
  for (let p = 1; p <= n; p *= 10) if (p > n - added) return true;
  return false;
};

/** The first, then one line per `k` occurrences: a reminder at a steady pace. */
export const firstThenEvery =
  (k: number): LogPolicy =>
  (n, added = 1) =>
    n - added === 0 || Math.floor(n / k) > Math.floor((n - added) / k);

/** One problem that repeats: its count since it began, whether an occurrence deserves a line, and its end. */
export class Repeating {
  private n = 0;
  private kind?: string;

  constructor(private readonly policy: LogPolicy) {}

  get count(): number {
    return this.n;
  }

  /** Counts `added` more occurrences; true when they deserve a line: the policy says so, or the problem changed its kind. */
  occurred(kind?: string, added = 1): boolean {
    this.n += added;
    const changed = this.kind !== undefined && kind !== this.kind;
    this.kind = kind;
    return this.policy(this.n, added) || changed;
  }

  /** The problem is over: how many times it occurred (0 when it was not going on); the next one starts afresh. */
  ended(): number {
    const n = this.n;
    this.n = 0;
    this.kind = undefined;
    return n;
  }
}

/** Reports of a lasting state (an outage) at a falling rate: first after `firstMs`, then twice as far apart, up to `maxMs`. */
export class FallingRate {
  private every: number;
  private next = 0;

  constructor(
    private readonly firstMs: number,
    private readonly maxMs: number,
  ) {
    this.every = firstMs;
  }

  /** The state began at `nowMs`. */
  start(nowMs: number): void {
    this.every = this.firstMs;
    this.next = nowMs + this.every;
  }

  /** Whether a report is due at `nowMs`; when it is, the next one is planned twice as far off. */
  due(nowMs: number): boolean {
    if (nowMs < this.next) return false;
    this.every = Math.min(this.every * 2, this.maxMs);
    this.next = nowMs + this.every;
    return true;
  }
}
