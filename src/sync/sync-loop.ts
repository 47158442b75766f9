import { randomUUID } from 'node:crypto';
import type { Logger } from '../util/logger.js';
import type { PendingRow } from '../store/store.js';
import { Backoff } from '../mqtt/backoff.js';
import { PublishRejectedError, PublishUnknownError } from '../mqtt/errors.js';
import type { LinkLimits } from '../mqtt/link.js';
import { gzipSync } from 'node:zlib';
import { encodeReadings } from './payload.js';

/** What the sync loop needs from the store: a transaction-like buffer (Telegraf's BeginTransaction/EndTransaction). */
export interface SyncStore {
  takePending(limit: number, afterSeq: number): PendingRow[];
  /** marks acknowledged batches synced in one transaction, logging one event per batch */
  settleAcked(batches: ReadonlyArray<{ seqs: readonly number[]; event: Record<string, unknown> }>, atMs: number): number;
  recordUnknown(seqs: readonly number[]): void;
  recordRejected(seqs: readonly number[], maxAttempts: number, atMs?: number, reason?: string): number;
  /** rows that can never be delivered as they are: parked at once, with the reason */
  park(seqs: readonly number[], reason: string): number;
  logEvent(type: string, details: Record<string, unknown>): void;
}

/** What the sync loop needs from the MQTT side: a connection that publishes QoS 1 and says how it ended. */
export interface BatchPublisher {
  readonly connected: boolean;
  readonly limits: LinkLimits | undefined;
  publish(topic: string, payload: string | Buffer, opts: { retain?: boolean; properties?: Record<string, unknown> }, timeoutMs: number): Promise<void>;
  on(event: 'connect', fn: (limits: LinkLimits) => void): unknown;
  on(event: 'disconnect', fn: (info: { reason: string }) => void): unknown;
}

export interface SyncOptions {
  deviceId: string;
  topic: string;
  batchSize: number;
  maxInFlight: number;
  intervalMs: number;
  publishTimeoutMs: number;
  compression: 'none' | 'gzip';
  protocolVersion: 4 | 5;
  retry: { initialDelayMs: number; maxDelayMs: number; maxAttempts: number };
}

export interface SyncStats {
  ackedBatches: number;
  ackedRows: number;
  rejectedBatches: number;
  unknownBatches: number;
  parkedRows: number;
  inFlightBatches: number;
  window: number;
  lastAckAt?: number;
  lastError?: string;
  lastErrorAt?: number;
  backoffUntil?: number;
}

export interface SyncReport {
  ok: boolean;
  ackedRows: number;
  ackedBatches: number;
  pendingLeft?: number;
  reason?: string;
  /** the request came too soon after others: the backoff was kept */
  rateLimited?: boolean;
}

interface Batch {
  id: string;
  seqs: number[];
  firstSeq: number;
  lastSeq: number;
  bytes: number;
  startedAt: number;
}

// Room for the fixed header, topic, packet id and properties when fitting a batch under the
// broker's Maximum Packet Size.
const PACKET_OVERHEAD = 64;
/** a reading alone that the broker answers by closing the connection this often is parked */
const CLOSE_REFUSALS_TO_PARK = 3;

/**
 * Moves pending rows to the broker. Each batch ends in exactly one outcome:
 *  - acked: PUBACK with a success code; rows marked synced (never earlier);
 *  - rejected: the broker refused it; rows counted, retried after backoff, parked after maxAttempts;
 *  - unknown: timeout, connection lost, stopping; rows stay pending and are counted.
 * A row is in at most one in-flight batch: after any failure the loop waits until nothing is in
 * flight, then starts again from the oldest pending row.
 */
export class SyncLoop {
  private readonly inFlight = new Map<string, Batch>();
  private cursor = 0;
  private needsRewind = true;
  private readonly backoff: Backoff;
  private backoffUntil = 0;
  private wakeTimer?: NodeJS.Timeout;
  private wakeDueAt = 0;
  private running = false;
  private paused = false;
  private acked: Array<{ batch: Batch; atMs: number }> = [];
  /** after a refusal or a timeout, one batch at a time until something is acknowledged again */
  private probing = false;
  /** rows per batch that fit under the broker's Maximum Packet Size, once a split was needed */
  private fitRows = Infinity;
  /**
   * A size limit learnt from a broker that does not announce one (MQTT 3.1.1): payload bytes it
   * took (the largest acknowledged) and the bound below which the message it closed the
   * connection on would have had to be (halved on each such close).
   */
  private largestAckedBytes = 0;
  private learntBudget = Infinity;
  private ackFlushScheduled = false;
  /** acknowledgements that could not be recorded are retried after this time */
  private ackRetryAt = 0;
  private ackFailures = 0;
  private idleWaiters: Array<() => void> = [];
  readonly stats: SyncStats = { ackedBatches: 0, ackedRows: 0, rejectedBatches: 0, unknownBatches: 0, parkedRows: 0, inFlightBatches: 0, window: 0 };
  /** called when a batch is settled (for tests and the status reporter) */
  onSettled: (outcome: 'acked' | 'rejected' | 'unknown', rows: number) => void = () => {};

  constructor(
    private readonly store: SyncStore,
    private readonly link: BatchPublisher,
    private readonly opts: SyncOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.backoff = new Backoff(opts.retry.initialDelayMs, opts.retry.maxDelayMs);
  }

  start(): void {
    this.running = true;
    this.link.on('connect', () => {
      this.needsRewind = true;
      this.fitRows = Infinity; // another broker (or another limit) after a reconnect
      this.pump();
    });
    this.pump();
  }

  /** How many batches may await PUBACK: our setting, but never more than the broker's Receive Maximum (one slot kept for status). */
  window(): number {
    // While probing, a single batch: some brokers drop the connection after refusing a publish
    // (Mosquitto 2.0.11 with max_queued_messages 0 does), and every other batch in flight would
    // then end "unknown" and count an attempt for rows the broker never judged.
    if (this.probing) return 1;
    const rm = this.link.limits?.receiveMaximum ?? 65535;
    return Math.max(1, Math.min(this.opts.maxInFlight, rm > 1 ? rm - 1 : 1));
  }

  /** Stops or resumes taking new batches (offline by choice). */
  setPaused(paused: boolean): void {
    this.paused = paused;
    if (!paused) this.pump();
  }

  /** Fills the in-flight window with the oldest pending rows. Synchronous and re-entrant-safe. */
  pump(): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.flushAcks();
    if (this.acked.length > 0) {
      // acknowledgements not recorded yet (storage full): nothing new until they are
      this.wakeAt(Math.max(10, this.ackRetryAt - this.now()));
      return;
    }
    if (!this.running || this.paused) return;
    if (!this.link.connected) return; // the 'connect' event pumps again
    const now = this.now();
    if (now < this.backoffUntil) {
      this.wakeAt(this.backoffUntil - now);
      return;
    }
    if (this.needsRewind) {
      if (this.inFlight.size > 0) return; // the last settle pumps again
      this.cursor = 0;
      this.needsRewind = false;
    }
    const window = this.window();
    this.stats.window = window;
    while (this.inFlight.size < window) {
      const rows = this.store.takePending(Math.min(this.opts.batchSize, this.fitRows), this.cursor);
      if (rows.length === 0) break;
      const sent = this.dispatchRows(rows);
      this.cursor = rows[sent - 1].seq;
      if (!this.link.connected) return;
    }
    // room left in the window means nothing more is pending right now: look again later
    if (this.inFlight.size < window) this.wakeAt(this.opts.intervalMs);
    if (this.inFlight.size === 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private wakeAt(ms: number): void {
    clearTimeout(this.wakeTimer);
    this.wakeDueAt = this.now() + ms;
    this.wakeTimer = setTimeout(() => this.pump(), ms);
  }

  /**
   * New rows were just written. If the next idle look is due soon anyway (within a tenth of
   * sync.intervalMs), look now: with a tick every second and the default interval of a second,
   * the round rides on the write's wake-up instead of a timer of its own a moment later (one
   * wake-up a second less on a Pi). A longer interval (fewer rounds, fewer SD-card writes) is kept.
   */
  nudge(): void {
    if (this.wakeTimer !== undefined && this.wakeDueAt - this.now() <= this.opts.intervalMs / 10) this.pump();
  }

  /**
   * Publishes the longest prefix of rows whose message fits under the broker's Maximum Packet
   * Size (all of them, usually) as one batch; returns how many rows it took. The rest stays for
   * the next batch, so splitting never pushes the window past its limit.
   */
  private dispatchRows(all: PendingRow[]): number {
    let rows = all;
    let { id, payload } = this.encode(rows);
    const max = this.link.limits?.maximumPacketSize;
    const budget = Math.min(max !== undefined ? max - this.opts.topic.length - PACKET_OVERHEAD : Infinity, this.learntBudget);
    if (budget !== Infinity) {
      while (payload.length > budget && rows.length > 1) {
        const n = Math.max(1, Math.min(rows.length - 1, Math.floor((rows.length * budget * 0.95) / payload.length)));
        rows = rows.slice(0, n);
        ({ id, payload } = this.encode(rows));
      }
      if (payload.length > budget) {
        // one reading that can never fit: sending it would only make the broker drop the connection
        const limit = max !== undefined && budget < this.learntBudget ? `the broker takes at most ${max} per packet` : `more than the ${this.learntBudget} bytes taken as its limit since it closed the connection on a larger message`;
        this.parkNow(rows, `too large for the broker: ${payload.length} bytes alone, ${limit}`);
        return 1;
      }
      // remember what fits (by the rows' average size, so that one large row does not shrink
      // every later batch), so the next take does not read and encode rows only to cut them
      if (rows.length < all.length) this.fitRows = Math.max(1, Math.floor((rows.length * budget) / payload.length));
    }
    const seqs = new Array<number>(rows.length);
    for (let i = 0; i < rows.length; i++) seqs[i] = rows[i].seq;
    const batch: Batch = { id, seqs, firstSeq: seqs[0], lastSeq: seqs[seqs.length - 1], bytes: payload.length, startedAt: this.now() };
    this.inFlight.set(batch.id, batch);
    this.stats.inFlightBatches = this.inFlight.size;
    const properties = this.opts.compression === 'gzip' ? { contentType: 'application/json+gzip' } : undefined;
    this.link.publish(this.opts.topic, payload, { properties }, this.opts.publishTimeoutMs).then(
      () => this.onAcked(batch),
      (err: Error) => this.onFailed(batch, err),
    );
    return rows.length;
  }

  private encode(rows: readonly PendingRow[]): { id: string; payload: Buffer } {
    const id = randomUUID();
    const json = encodeReadings(this.opts.deviceId, id, rows);
    return { id, payload: this.opts.compression === 'gzip' ? gzipSync(json) : Buffer.from(json) };
  }

  private onAcked(batch: Batch): void {
    this.inFlight.delete(batch.id);
    this.stats.inFlightBatches = this.inFlight.size;
    // several PUBACKs often arrive in one read: mark them synced in one transaction (one fsync)
    this.acked.push({ batch, atMs: this.now() });
    if (!this.ackFlushScheduled) {
      this.ackFlushScheduled = true;
      setImmediate(() => this.pump());
    }
  }

  /** Marks acknowledged batches synced. Runs before every take, so a row is never re-sent once acked in memory. */
  private flushAcks(): void {
    this.ackFlushScheduled = false;
    if (this.acked.length === 0) return;
    if (this.now() < this.ackRetryAt) return;
    const acked = this.acked;
    const atMs = acked[acked.length - 1].atMs;
    try {
      this.store.settleAcked(
        acked.map(({ batch, atMs: t }) => ({
          seqs: batch.seqs,
          event: { batch: batch.id, rows: batch.seqs.length, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, bytes: batch.bytes, ms: t - batch.startedAt },
        })),
        atMs,
      );
    } catch (err) {
      // The broker has these rows, but we cannot write that down (disk full?). Keep the
      // acknowledgements in memory and try again shortly; meanwhile send nothing new: those rows
      // are still pending in the database, and sending again would only resend them (or pile up
      // more acknowledgements we cannot record). If the process dies first, they are resent after
      // the restart: a bounded duplicate, never a loss.
      const delay = Math.min(30_000, 500 * 2 ** Math.min(this.ackFailures++, 6));
      this.ackRetryAt = this.now() + delay;
      this.noteError(`cannot mark rows synced: ${(err as Error).message}`);
      if (this.ackFailures === 1) {
        this.log.error({ err, batches: acked.length }, 'cannot record acknowledged rows as synced; holding them in memory and retrying, sending nothing new meanwhile');
      }
      return;
    }
    this.acked = [];
    if (this.ackFailures > 0) {
      this.log.info({ attempts: this.ackFailures, batches: acked.length }, 'acknowledged rows recorded as synced again');
      this.ackFailures = 0;
    }
    this.ackRetryAt = 0;
    let rows = 0;
    for (const { batch } of acked) {
      rows += batch.seqs.length;
      this.largestAckedBytes = Math.max(this.largestAckedBytes, batch.bytes);
    }
    this.stats.ackedBatches += acked.length;
    this.stats.ackedRows += rows;
    this.stats.lastAckAt = atMs;
    this.backoff.reset();
    this.probing = false;
    this.log.debug({ batches: acked.length, rows }, 'batches acked');
    for (const { batch } of acked) this.onSettled('acked', batch.seqs.length);
  }

  private onFailed(batch: Batch, err: Error): void {
    this.inFlight.delete(batch.id);
    this.stats.inFlightBatches = this.inFlight.size;
    this.needsRewind = true;
    const rows = batch.seqs.length;
    const range = { batch: batch.id, rows, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq };
    try {
      if (err instanceof PublishRejectedError) {
        const parked = this.store.recordRejected(batch.seqs, this.opts.retry.maxAttempts, this.now(), `refused by the broker ${this.opts.retry.maxAttempts} times: ${err.message}`);
        this.stats.rejectedBatches++;
        this.stats.parkedRows += parked;
        this.noteError(err.message);
        this.store.logEvent('batch_rejected', { ...range, reasonCode: err.reasonCode, error: err.message });
        if (parked > 0) {
          this.store.logEvent('rows_parked', { ...range, parked, maxAttempts: this.opts.retry.maxAttempts });
          this.log.error({ ...range, parked, reasonCode: err.reasonCode }, 'broker refused these rows too often; parked (kept, excluded from sync until requeued)');
        } else {
          this.log.warn({ ...range, reasonCode: err.reasonCode, error: err.message }, 'batch rejected by broker; will retry');
        }
        this.delayNext();
        this.onSettled('rejected', rows);
      } else if (err instanceof PublishUnknownError && err.closedAfterPublish) {
        this.onClosedAfterPublish(batch, err, err.closedAfterPublish);
      } else {
        const why = err instanceof PublishUnknownError ? err.why : 'error';
        this.store.recordUnknown(batch.seqs);
        this.stats.unknownBatches++;
        this.noteError(err.message);
        if (why === 'timeout') {
          this.store.logEvent('batch_timeout', { ...range, timeoutMs: this.opts.publishTimeoutMs });
          this.log.warn({ ...range, timeoutMs: this.opts.publishTimeoutMs }, 'no PUBACK in time; rows stay pending and will be sent again');
          this.delayNext();
        } else {
          this.log.debug({ ...range, why, error: err.message }, 'batch outcome unknown; rows stay pending');
        }
        this.onSettled('unknown', rows);
      }
    } catch (dbErr) {
      // counting the attempt failed (disk full?); the rows are pending in any case
      this.log.error({ err: dbErr, ...range }, 'cannot record the failed attempt');
    }
    if (this.inFlight.size === 0) queueMicrotask(() => this.pump());
  }

  /**
   * The broker closed the connection right after this batch went out: how a broker refuses a
   * packet it cannot take when it has no other way (MQTT 3.1.1; a limit not announced). Alone on
   * the wire and larger than anything acknowledged so far, it says the message was too large: the
   * size limit is learnt (halved each time), batches are cut under it and a reading that cannot
   * fit alone is parked at the next take. Otherwise, alone, it is counted as a refusal (parked
   * after a few); with others beside it nobody knows which, so one at a time from now on. Either
   * way the next attempt waits for the backoff, which only an acknowledgement resets.
   */
  private onClosedAfterPublish(batch: Batch, err: PublishUnknownError, c: { onWire: number; reasonCode?: number }): void {
    const range = { batch: batch.id, rows: batch.seqs.length, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, bytes: batch.bytes, reasonCode: c.reasonCode };
    this.noteError(err.message);
    if (c.onWire === 1 && batch.bytes > this.largestAckedBytes) {
      this.learntBudget = Math.max(this.largestAckedBytes, Math.floor(batch.bytes / 2));
      this.fitRows = Infinity;
      this.store.recordUnknown(batch.seqs);
      this.stats.unknownBatches++;
      this.store.logEvent('batch_unknown', { ...range, error: err.message, by: 'connection closed after publish', sizeLimitNow: this.learntBudget });
      this.log.warn({ ...range, sizeLimitNow: this.learntBudget }, 'the broker closed the connection on this message: taking it as too large; smaller messages from now on');
      this.onSettled('unknown', batch.seqs.length);
    } else if (c.onWire === 1) {
      const reason = `the broker closed the connection each time these readings were sent (${batch.bytes} bytes${c.reasonCode !== undefined ? `, reason code 0x${c.reasonCode.toString(16)}` : ''})`;
      const parked = this.store.recordRejected(batch.seqs, Math.min(this.opts.retry.maxAttempts, CLOSE_REFUSALS_TO_PARK), this.now(), reason);
      this.stats.rejectedBatches++;
      this.store.logEvent('batch_rejected', { ...range, error: err.message, by: 'connection closed after publish' });
      if (parked > 0) this.reportParked(batch.seqs, reason);
      else this.log.warn(range, 'the broker closed the connection right after this batch alone; will retry after the backoff');
      this.onSettled('rejected', batch.seqs.length);
    } else {
      this.store.recordUnknown(batch.seqs);
      this.stats.unknownBatches++;
      this.log.warn({ ...range, onWire: c.onWire }, 'the broker closed the connection right after this batch; one batch at a time until something is acknowledged');
      this.onSettled('unknown', batch.seqs.length);
    }
    this.delayNext();
  }

  /** Rows that can never be delivered as they are: parked now, with the reason, so the rest goes on. */
  private parkNow(rows: readonly PendingRow[], reason: string): void {
    const seqs = rows.map((r) => r.seq);
    try {
      this.store.park(seqs, reason);
    } catch (err) {
      // not even that could be written (disk full?): wait, as for any failed write
      this.log.error({ err, firstSeq: seqs[0] }, 'cannot park a reading that does not fit');
      this.needsRewind = true;
      this.delayNext();
      return;
    }
    this.reportParked(seqs, reason);
  }

  private reportParked(seqs: readonly number[], reason: string): void {
    this.stats.parkedRows += seqs.length;
    const range = { rows: seqs.length, firstSeq: seqs[0], lastSeq: seqs[seqs.length - 1] };
    this.store.logEvent('rows_parked', { ...range, reason });
    this.log.error({ ...range, reason }, 'parked (kept, excluded from sync until requeued; edge-sensor requeue --list shows them)');
  }

  private delayNext(): void {
    this.probing = true;
    const delay = this.backoff.next();
    this.backoffUntil = Math.max(this.backoffUntil, this.now() + delay);
    this.stats.backoffUntil = this.backoffUntil;
  }

  private noteError(msg: string): void {
    this.stats.lastError = msg;
    this.stats.lastErrorAt = this.now();
  }

  /** Resolves when nothing is in flight and no pending row was found (or at the deadline). */
  whenIdle(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== done);
        resolve(false);
      }, timeoutMs);
      const done = () => {
        clearTimeout(t);
        resolve(true);
      };
      this.idleWaiters.push(done);
      this.pump();
    });
  }

  /** One cycle now (skipping the backoff when `skipBackoff`): send what is pending, report what was acknowledged. */
  async syncNow(timeoutMs: number, skipBackoff = true): Promise<SyncReport> {
    const before = { rows: this.stats.ackedRows, batches: this.stats.ackedBatches, errors: this.stats.lastErrorAt };
    if (skipBackoff) {
      this.backoffUntil = 0;
      this.backoff.reset();
    }
    const idle = await this.whenIdle(timeoutMs);
    const ackedRows = this.stats.ackedRows - before.rows;
    const ackedBatches = this.stats.ackedBatches - before.batches;
    const newError = this.stats.lastErrorAt !== before.errors ? this.stats.lastError : undefined;
    if (!this.link.connected) return { ok: false, ackedRows, ackedBatches, reason: newError ?? 'not connected to the broker' };
    if (!idle) return { ok: ackedRows > 0, ackedRows, ackedBatches, reason: `still sending after ${timeoutMs} ms` };
    return { ok: !newError, ackedRows, ackedBatches, reason: newError };
  }

  /**
   * Stops taking new batches (paused) and waits for the ones in flight, up to the deadline.
   * Whatever is not acknowledged by then stays pending for the next start.
   */
  async drain(deadlineMs: number): Promise<{ settled: boolean; inFlight: number }> {
    this.paused = true;
    clearTimeout(this.wakeTimer);
    const end = this.now() + deadlineMs;
    while (this.inFlight.size > 0 && this.now() < end && this.link.connected) {
      await new Promise((r) => setTimeout(r, 20));
    }
    this.ackRetryAt = 0; // a last try to record what was acknowledged
    this.flushAcks();
    return { settled: this.inFlight.size === 0, inFlight: this.inFlight.size };
  }

  /** No more pumping; timers cleared. */
  stop(): void {
    this.running = false;
    this.paused = true;
    clearTimeout(this.wakeTimer);
  }

  /** The seq range of rows sent but not yet marked synced (in flight, or acked and not yet written). */
  inFlightRange(): [number, number] | undefined {
    let lo = Infinity;
    let hi = -Infinity;
    for (const b of this.inFlight.values()) {
      lo = Math.min(lo, b.firstSeq);
      hi = Math.max(hi, b.lastSeq);
    }
    for (const { batch } of this.acked) {
      lo = Math.min(lo, batch.firstSeq);
      hi = Math.max(hi, batch.lastSeq);
    }
    return lo <= hi ? [lo, hi] : undefined;
  }

  /** Rows in batches that await a PUBACK right now. */
  inFlightRows(): number {
    let n = 0;
    for (const b of this.inFlight.values()) n += b.seqs.length;
    return n;
  }

  /** After a requeue: parked rows may now sit behind the cursor; start again from the oldest. */
  rewind(): void {
    this.needsRewind = true;
    this.pump();
  }
}
