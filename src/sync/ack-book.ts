import type { AckWrite } from '../store/store.js';
import type { Logger } from '../util/logger.js';
import { firstOnly, Repeating } from '../util/log-throttle.js';

/** What the book needs from the store: acknowledged rows written in a transaction of their own. */
export interface AckStore {
  settleAcked(acks: AckWrite, atMs: number): number;
}

export interface AckBookOptions {
  /** acknowledged rows wait at most this long for an append to carry them; then they are written alone (0: at once) */
  writeDelayMs: number;
  /** one `batches_acked` sync_log event and one counter update per this period at most */
  summaryEveryMs?: number;
  /** this many acknowledged rows waiting are written at once (a backlog drains faster than readings come in); the daemon uses what can be in flight, so a crash resends at most twice that */
  maxWaitingRows?: number;
}

export interface AckedBatch {
  id: string;
  seqs: readonly number[];
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  /** from publish to PUBACK */
  ms: number;
}

interface Summary {
  batches: number;
  rows: number;
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  maxMs: number;
  lastAckAt: number;
}

/**
 * Rows the broker acknowledged (PUBACK), held in memory until they are written down as synced.
 * They ride on the next append's transaction (the keeper asks with `take`), so that a sync round
 * costs no fsync of its own; when no append comes within `writeDelayMs` they are written alone.
 * A crash before the write loses nothing: those rows are still pending in the database and are
 * sent again after the restart (duplicates, absorbed downstream by (device, seq)).
 * The `synced_total` counter and a `batches_acked` summary are written with the rows at most once
 * per `summaryEveryMs` (and at every `flush`), not per round.
 */
export class AckBook {
  /** acknowledged, not yet marked synced in the database */
  private readonly waiting = new Set<number>();
  /** acknowledged, not yet added to synced_total */
  private uncounted = 0;
  private summary?: Summary;
  private lastSummaryAt: number;
  private timer?: NodeJS.Timeout;
  /** the timer is armed for now: the sync loop writes first, then looks for more */
  private due = false;
  /** a write of its own failed (disk full): the sync loop sends nothing new until one works */
  private failing = false;
  private readonly trouble = new Repeating(firstOnly);

  constructor(
    private readonly store: AckStore,
    private readonly opts: AckBookOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.lastSummaryAt = now();
  }

  /** A batch the broker acknowledged. */
  add(batch: AckedBatch): void {
    for (const seq of batch.seqs) this.waiting.add(seq);
    this.uncounted += batch.seqs.length;
    const s = this.summary;
    const at = this.now();
    if (!s) this.summary = { batches: 1, rows: batch.seqs.length, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, bytes: batch.bytes, maxMs: batch.ms, lastAckAt: at };
    else {
      s.batches++;
      s.rows += batch.seqs.length;
      s.firstSeq = Math.min(s.firstSeq, batch.firstSeq);
      s.lastSeq = Math.max(s.lastSeq, batch.lastSeq);
      s.bytes += batch.bytes;
      s.maxMs = Math.max(s.maxMs, batch.ms);
      s.lastAckAt = at;
    }
    if (this.opts.writeDelayMs === 0 || this.waiting.size >= (this.opts.maxWaitingRows ?? 10_000)) this.armIn(0);
    else if (!this.timer) this.armIn(this.opts.writeDelayMs);
  }

  /** Acknowledged and not yet written: the sync loop must not take these rows again. */
  has(seq: number): boolean {
    return this.waiting.has(seq);
  }

  /** Rows acknowledged but still pending in the database (status counts them as synced). */
  get waitingRows(): number {
    return this.waiting.size;
  }

  /** Rows acknowledged but not yet in the database's synced_total. */
  get uncountedRows(): number {
    return this.uncounted;
  }

  /** Writes now what is due now (writeDelayMs 0, or too many rows waiting): before the loop sends more. */
  writeIfDue(): void {
    if (this.due) this.flush();
  }

  /** The last write of its own failed; it is retried on a timer. */
  get stuck(): boolean {
    return this.failing;
  }

  /** The seq range of rows waiting (the disk guard never drops them). */
  range(): [number, number] | undefined {
    if (this.waiting.size === 0) return undefined;
    let lo = Infinity;
    let hi = -Infinity;
    for (const s of this.waiting) {
      if (s < lo) lo = s;
      if (s > hi) hi = s;
    }
    return [lo, hi];
  }

  /**
   * What the next append transaction should also write (undefined: nothing). Nothing changes until
   * `written` confirms the transaction committed.
   */
  take(force = false): AckWrite | undefined {
    if (this.waiting.size === 0 && this.uncounted === 0) return undefined;
    const due = force || this.now() - this.lastSummaryAt >= (this.opts.summaryEveryMs ?? 60_000);
    if (!due && this.waiting.size === 0) return undefined;
    const s = this.summary;
    return {
      seqs: [...this.waiting],
      counted: due ? this.uncounted : 0,
      summary: due && s ? { batches: s.batches, rows: s.rows, firstSeq: s.firstSeq, lastSeq: s.lastSeq, bytes: s.bytes, maxMs: s.maxMs, lastAckAt: new Date(s.lastAckAt).toISOString() } : undefined,
    };
  }

  /** The transaction that carried `w` committed. */
  written(w: AckWrite): void {
    for (const seq of w.seqs) this.waiting.delete(seq);
    if (w.summary || w.counted > 0) {
      this.uncounted -= w.counted;
      this.summary = undefined;
      this.lastSummaryAt = this.now();
    }
    if (this.failing) {
      this.failing = false;
      const attempts = this.trouble.ended();
      this.log.info({ attempts }, 'acknowledged rows recorded as synced again');
    }
    if (this.waiting.size === 0) this.disarm();
  }

  /**
   * Writes what waits now, in a transaction of its own, counter and summary included (operator
   * `sync`, shutdown). Returns false when it could not (it is retried on the timer).
   */
  flush(): boolean {
    this.disarm();
    const w = this.take(true);
    if (!w) return true;
    try {
      this.store.settleAcked(w, this.now());
    } catch (err) {
      // The broker has these rows but we cannot write that down (disk full?): held and retried.
      // If the process dies first, they are resent after the restart: a duplicate, never a loss.
      const first = this.trouble.occurred();
      this.failing = true;
      if (first) this.log.error({ err, rows: w.seqs.length }, 'cannot record acknowledged rows as synced; holding them in memory and retrying, sending nothing new meanwhile');
      this.armIn(Math.min(30_000, 500 * 2 ** Math.min(this.trouble.count - 1, 6)));
      return false;
    }
    this.written(w);
    return true;
  }

  /** No more timers (the daemon stops; `flush` first to write what waits). */
  stop(): void {
    this.disarm();
  }

  private armIn(ms: number): void {
    clearTimeout(this.timer);
    this.due = ms === 0;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, ms);
  }

  private disarm(): void {
    this.due = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
