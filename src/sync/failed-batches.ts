import type { Logger } from '../util/logger.js';
import { PublishRejectedError, PublishUnknownError } from '../mqtt/errors.js';
import type { PacketBudget } from './packet-budget.js';
import type { SyncStats, SyncStore } from './sync-loop.js';

/** One published message of readings, awaiting its PUBACK. */
export interface Batch {
  id: string;
  seqs: number[];
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  startedAt: number;
}

/** a reading alone that the broker answers by closing the connection this often is parked */
const CLOSE_REFUSALS_TO_PARK = 3;

export function noteError(stats: SyncStats, message: string, atMs: number): void {
  stats.lastError = message;
  stats.lastErrorAt = atMs;
}

/**
 * Writes down how a batch that was not acknowledged ended, in the store (attempt counted, parked
 * after too many refusals), the sync log, the stats and the log. The rows stay pending unless parked.
 */
export class FailedBatches {
  constructor(
    private readonly store: SyncStore,
    private readonly stats: SyncStats,
    private readonly budget: PacketBudget,
    private readonly opts: { maxAttempts: number; publishTimeoutMs: number },
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** Returns whether the next attempt waits for the backoff. Never throws: a failed write leaves the rows pending anyway. */
  record(batch: Batch, err: Error): boolean {
    const range = { batch: batch.id, rows: batch.seqs.length, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq };
    const { maxAttempts, publishTimeoutMs } = this.opts;
    try {
      if (err instanceof PublishRejectedError) {
        const parked = this.store.recordRejected(batch.seqs, maxAttempts, this.now(), `refused by the broker ${maxAttempts} times: ${err.message}`);
        this.stats.rejectedBatches++;
        this.stats.parkedRows += parked;
        noteError(this.stats, err.message, this.now());
        this.store.logEvent('batch_rejected', { ...range, reasonCode: err.reasonCode, error: err.message });
        if (parked > 0) {
          this.store.logEvent('rows_parked', { ...range, parked, maxAttempts });
          this.log.error({ ...range, parked, reasonCode: err.reasonCode }, 'broker refused these rows too often; parked (kept, excluded from sync until requeued)');
        } else {
          this.log.warn({ ...range, reasonCode: err.reasonCode, error: err.message }, 'batch rejected by broker; will retry');
        }
        return true;
      }
      if (err instanceof PublishUnknownError && err.closedAfterPublish) return this.closedAfterPublish(batch, err, err.closedAfterPublish);
      const why = err instanceof PublishUnknownError ? err.why : 'error';
      this.store.recordUnknown(batch.seqs);
      this.stats.unknownBatches++;
      noteError(this.stats, err.message, this.now());
      if (why !== 'timeout') {
        this.log.debug({ ...range, why, error: err.message }, 'batch outcome unknown; rows stay pending');
        return false;
      }
      this.store.logEvent('batch_timeout', { ...range, timeoutMs: publishTimeoutMs });
      this.log.warn({ ...range, timeoutMs: publishTimeoutMs }, 'no PUBACK in time; rows stay pending and will be sent again');
      return true;
    } catch (dbErr) {
      // counting the attempt failed (disk full?); the rows are pending in any case
      this.log.error({ err: dbErr, ...range }, 'cannot record the failed attempt');
      return false;
    }
  }

  /**
   * The broker closed the connection right after this batch went out: how a broker refuses a packet
   * it cannot take when it has no other way (MQTT 3.1.1; a limit not announced). Alone on the wire
   * and larger than anything acknowledged, it was too large: the limit is learnt. Alone otherwise,
   * it is a refusal (parked after a few); with others beside it nobody knows which one it was.
   */
  private closedAfterPublish(batch: Batch, err: PublishUnknownError, c: { onWire: number; reasonCode?: number }): boolean {
    const range = { batch: batch.id, rows: batch.seqs.length, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, bytes: batch.bytes, reasonCode: c.reasonCode };
    noteError(this.stats, err.message, this.now());
    const learnt = c.onWire === 1 ? this.budget.closedOn(batch.bytes) : undefined;
    if (learnt !== undefined) {
      this.store.recordUnknown(batch.seqs);
      this.stats.unknownBatches++;
      this.store.logEvent('batch_unknown', { ...range, error: err.message, by: 'connection closed after publish', sizeLimitNow: learnt });
      this.log.warn({ ...range, sizeLimitNow: learnt }, 'the broker closed the connection on this message: taking it as too large; smaller messages from now on');
    } else if (c.onWire === 1) {
      const reason = `the broker closed the connection each time these readings were sent (${batch.bytes} bytes${c.reasonCode !== undefined ? `, reason code 0x${c.reasonCode.toString(16)}` : ''})`;
      const parked = this.store.recordRejected(batch.seqs, Math.min(this.opts.maxAttempts, CLOSE_REFUSALS_TO_PARK), this.now(), reason);
      this.stats.rejectedBatches++;
      this.store.logEvent('batch_rejected', { ...range, error: err.message, by: 'connection closed after publish' });
      if (parked > 0) this.reportParked(batch.seqs, reason);
      else this.log.warn(range, 'the broker closed the connection right after this batch alone; will retry after the backoff');
    } else {
      this.store.recordUnknown(batch.seqs);
      this.stats.unknownBatches++;
      this.log.warn({ ...range, onWire: c.onWire }, 'the broker closed the connection right after this batch; one batch at a time until something is acknowledged');
    }
    // the next attempt waits for the backoff, which only an acknowledgement resets
    return true;
  }

  /** Rows that can never be delivered as they are: parked now, with the reason. False when that could not be written. */
  parkNow(seqs: readonly number[], reason: string): boolean {
    try {
      this.store.park(seqs, reason);
    } catch (err) {
      this.log.error({ err, firstSeq: seqs[0] }, 'cannot park a reading that does not fit');
      return false;
    }
    this.reportParked(seqs, reason);
    return true;
  }

  private reportParked(seqs: readonly number[], reason: string): void {
    this.stats.parkedRows += seqs.length;
    const range = { rows: seqs.length, firstSeq: seqs[0], lastSeq: seqs[seqs.length - 1] };
    this.store.logEvent('rows_parked', { ...range, reason });
    this.log.error({ ...range, reason }, 'parked (kept, excluded from sync until requeued; edge-sensor requeue --list shows them)');
  }
}
