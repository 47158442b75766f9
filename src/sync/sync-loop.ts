import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Logger } from '../util/logger.js';
import type { PendingRow } from '../store/store.js';
import { Backoff } from '../util/backoff.js';
import { firstOnly, Repeating } from '../util/log-throttle.js';
import type { LinkLimits } from '../mqtt/link.js';
import { encodeReadings } from './payload.js';
import { PacketBudget } from './packet-budget.js';
import { FailedBatches, noteError, type Batch } from './failed-batches.js';

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
  /** the highest seq acknowledged by the broker since start (status reports it for the collector's tail check) */
  highestAckedSeq?: number;
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
  private readonly budget = new PacketBudget();
  private readonly failed: FailedBatches;
  private ackFlushScheduled = false;
  /** acknowledgements that could not be recorded are retried after this time */
  private ackRetryAt = 0;
  /** failures to record acknowledgements: an error line when they start, one when they end */
  private readonly ackTrouble = new Repeating(firstOnly);
  private idleWaiters: Array<() => void> = [];
  readonly stats: SyncStats = { ackedBatches: 0, ackedRows: 0, rejectedBatches: 0, unknownBatches: 0, parkedRows: 0, inFlightBatches: 0, window: 0 };

  constructor(
    private readonly store: SyncStore,
    private readonly link: BatchPublisher,
    private readonly opts: SyncOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.backoff = new Backoff(opts.retry.initialDelayMs, opts.retry.maxDelayMs);
    this.failed = new FailedBatches(store, this.stats, this.budget, { maxAttempts: opts.retry.maxAttempts, publishTimeoutMs: opts.publishTimeoutMs }, log, now);
  }

  start(): void {
    this.running = true;
    this.link.on('connect', () => {
      this.needsRewind = true;
      this.budget.reset();
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
  private pump(): void {
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
      const rows = this.store.takePending(this.budget.rowsFor(this.opts.batchSize), this.cursor);
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
   * New rows were just written. If the next idle look is due within a tenth of sync.intervalMs
   * anyway, look now: the round rides on the write's wake-up instead of a timer of its own a moment
   * later (one wake-up less per tick on a Pi). A longer interval (fewer rounds, fewer writes) is kept.
   */
  nudge(): void {
    if (this.wakeTimer !== undefined && this.wakeDueAt - this.now() <= this.opts.intervalMs / 10) this.pump();
  }

  /** Publishes the longest prefix of rows that fits the broker's limits as one batch; returns how many rows it took. */
  private dispatchRows(all: PendingRow[]): number {
    const { rows, message, tooLarge } = this.budget.fit(all, (r) => this.encode(r), this.link.limits?.maximumPacketSize, this.opts.topic.length);
    const { id, payload } = message;
    if (tooLarge !== undefined) {
      if (!this.failed.parkNow([rows[0].seq], tooLarge)) {
        // not even that could be written (disk full?): wait, as for any failed write
        this.needsRewind = true;
        this.delayNext();
      }
      return 1;
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
      // The broker has these rows, but we cannot write that down (disk full?). Hold the
      // acknowledgements and try again shortly, sending nothing new meanwhile: those rows are still
      // pending, and sending would only resend them. If the process dies first, they are resent
      // after the restart: a bounded duplicate, never a loss.
      const first = this.ackTrouble.occurred();
      this.ackRetryAt = this.now() + Math.min(30_000, 500 * 2 ** Math.min(this.ackTrouble.count - 1, 6));
      noteError(this.stats, `cannot mark rows synced: ${(err as Error).message}`, this.now());
      if (first) this.log.error({ err, batches: acked.length }, 'cannot record acknowledged rows as synced; holding them in memory and retrying, sending nothing new meanwhile');
      return;
    }
    this.acked = [];
    const attempts = this.ackTrouble.ended();
    if (attempts > 0) this.log.info({ attempts, batches: acked.length }, 'acknowledged rows recorded as synced again');
    this.ackRetryAt = 0;
    let rows = 0;
    let highest = this.stats.highestAckedSeq ?? 0;
    for (const { batch } of acked) {
      rows += batch.seqs.length;
      if (batch.lastSeq > highest) highest = batch.lastSeq;
      this.budget.acked(batch.bytes);
    }
    this.stats.ackedBatches += acked.length;
    this.stats.ackedRows += rows;
    this.stats.lastAckAt = atMs;
    this.stats.highestAckedSeq = highest;
    this.backoff.reset();
    this.probing = false;
    this.log.debug({ batches: acked.length, rows }, 'batches acked');
  }

  private onFailed(batch: Batch, err: Error): void {
    this.inFlight.delete(batch.id);
    this.stats.inFlightBatches = this.inFlight.size;
    this.needsRewind = true;
    if (this.failed.record(batch, err)) this.delayNext();
    if (this.inFlight.size === 0) queueMicrotask(() => this.pump());
  }

  private delayNext(): void {
    this.probing = true;
    const delay = this.backoff.next();
    this.backoffUntil = Math.max(this.backoffUntil, this.now() + delay);
    this.stats.backoffUntil = this.backoffUntil;
  }

  /** Resolves when nothing is in flight and no pending row was found (or at the deadline). */
  private whenIdle(timeoutMs: number): Promise<boolean> {
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

  /** After a requeue: parked rows may now sit behind the cursor; start again from the oldest. */
  rewind(): void {
    this.needsRewind = true;
    this.pump();
  }
}
