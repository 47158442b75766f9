import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import type { Logger } from '../util/logger.js';
import type { AckWrite, PendingRow } from '../store/store.js';
import { Backoff } from '../util/backoff.js';
import type { LinkLimits } from '../mqtt/link.js';
import { encodeReadings } from './payload.js';
import { PacketBudget } from './packet-budget.js';
import { FailedBatches, type Batch } from './failed-batches.js';
import { AckBook } from './ack-book.js';

/** What the sync loop needs from the store: a transaction-like buffer (Telegraf's BeginTransaction/EndTransaction). */
export interface SyncStore {
  takePending(limit: number, afterSeq: number): PendingRow[];
  /** acknowledged rows marked synced in a transaction of their own (see AckBook) */
  settleAcked(acks: AckWrite, atMs: number): number;
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
  /** the shortest time between two looks for pending rows; with nothing pending, a look every IDLE_LOOK_MS at least */
  intervalMs: number;
  /** with nothing pending, the next look after this long at the latest (default IDLE_LOOK_MS; tests that write beside the loop shorten it) */
  idleLookMs?: number;
  /** acknowledged rows wait this long at most for an append to write them (0 or absent: at once) */
  ackWriteDelayMs?: number;
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
 * With nothing pending, the loop looks again after this long (or sync.intervalMs, if longer): new
 * rows nudge it (the keeper's writes, a CLI `record` over the control socket), this look is for
 * anything else that writes to the database.
 */
export const IDLE_LOOK_MS = 30_000;

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
  /** when the loop last looked for pending rows */
  private lastLookAt = -Infinity;
  /** after a refusal or a timeout, one batch at a time until something is acknowledged again */
  private probing = false;
  private readonly budget = new PacketBudget();
  private readonly failed: FailedBatches;
  private pumpScheduled = false;
  /** the last look found fewer rows than it asked for: an acknowledgement alone brings nothing new to take */
  private drained = false;
  /** a take found a full batch since the loop was last idle: more was pending than one round sends */
  private backlog = false;
  /** acknowledged rows until they are written down (with the next append, or alone) */
  readonly acks: AckBook;
  private idleWaiters: Array<() => void> = [];
  readonly stats: SyncStats = { ackedBatches: 0, ackedRows: 0, rejectedBatches: 0, unknownBatches: 0, parkedRows: 0, inFlightBatches: 0, window: 0 };

  constructor(
    private readonly store: SyncStore,
    private readonly link: BatchPublisher,
    private readonly opts: SyncOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    acks?: AckBook,
  ) {
    this.acks = acks ?? new AckBook(store, { writeDelayMs: opts.ackWriteDelayMs ?? 0, maxWaitingRows: opts.batchSize * opts.maxInFlight }, log, now);
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

  /**
   * Fills the in-flight window with the oldest pending rows. Synchronous and re-entrant-safe.
   * `afterAcks`: only acknowledgements came since the last look; if that look had taken everything
   * pending, this one is skipped (new rows nudge the loop; the idle look catches other writers).
   */
  private pump(afterAcks = false): void {
    clearTimeout(this.wakeTimer);
    this.wakeTimer = undefined;
    this.pumpScheduled = false;
    this.acks.writeIfDue();
    if (this.acks.stuck) {
      // acknowledgements that cannot be recorded (storage full): nothing new until they are
      this.wakeAt(500);
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
      this.drained = false;
    }
    const window = this.window();
    this.stats.window = window;
    const look = !(afterAcks && this.drained);
    if (look) this.lastLookAt = now;
    while (look && this.inFlight.size < window) {
      const rows = this.takeUnacked(this.budget.rowsFor(this.opts.batchSize));
      if (rows.length === 0) break;
      const sent = this.dispatchRows(rows);
      this.cursor = rows[sent - 1].seq;
      if (!this.link.connected) return;
      // the take found fewer rows than it asked for and all went out: no second look for nothing
      if (this.drained && sent === rows.length) break;
    }
    // room left in the window means nothing more is pending right now: new rows nudge the loop;
    // the idle look is for writers that do not (a second process writing to the database)
    if (this.inFlight.size < window) this.wakeAt(Math.max(this.opts.intervalMs, this.opts.idleLookMs ?? IDLE_LOOK_MS));
    if (this.inFlight.size === 0) {
      // a backlog has just drained: its acknowledgements are written now, in one transaction (cheap
      // per row), not after ackWriteDelayMs; a steady trickle (never a full batch) still rides on appends
      if (this.drained && this.backlog) {
        this.backlog = false;
        this.acks.flush();
      }
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
   * The oldest pending rows after the cursor that are not acknowledged already (those wait in the
   * AckBook to be written down and are never sent twice).
   */
  private takeUnacked(limit: number): PendingRow[] {
    for (;;) {
      const rows = this.store.takePending(limit, this.cursor);
      this.drained = rows.length < limit;
      if (!this.drained) this.backlog = true;
      if (rows.length === 0 || this.acks.waitingRows === 0) return rows;
      const fresh = rows.filter((r) => !this.acks.has(r.seq));
      if (fresh.length > 0) return fresh;
      this.cursor = rows[rows.length - 1].seq;
    }
  }

  /**
   * New rows were written. The round rides on the write's wake-up (no polling timer of its own),
   * but never sooner than sync.intervalMs after the last look: a longer interval means fewer
   * rounds (less CPU, fewer writes), readings reach the broker later.
   */
  nudge(): void {
    if (!this.running) return;
    const now = this.now();
    // a tenth of slack: ticks a whole second apart must not miss a 1 s interval by a millisecond
    const dueAt = this.lastLookAt + this.opts.intervalMs * 0.9;
    if (now >= dueAt) this.pump();
    else if (this.wakeTimer === undefined || this.wakeDueAt > dueAt) this.wakeAt(dueAt - now);
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
    const atMs = this.now();
    this.stats.inFlightBatches = this.inFlight.size;
    // written down with the next append (or alone after sync.ackWriteDelayMs): no fsync of its own
    this.acks.add({ id: batch.id, seqs: batch.seqs, firstSeq: batch.firstSeq, lastSeq: batch.lastSeq, bytes: batch.bytes, ms: atMs - batch.startedAt });
    this.budget.acked(batch.bytes);
    this.stats.ackedBatches++;
    this.stats.ackedRows += batch.seqs.length;
    this.stats.lastAckAt = atMs;
    if (batch.lastSeq > (this.stats.highestAckedSeq ?? 0)) this.stats.highestAckedSeq = batch.lastSeq;
    this.backoff.reset();
    this.probing = false;
    this.log.debug({ batch: batch.id, rows: batch.seqs.length }, 'batch acked');
    // several PUBACKs often arrive in one read: one look for more after all of them
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      setImmediate(() => this.pump(true));
    }
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
    // the operator asked: what was acknowledged is written down now, not with the next append
    this.acks.flush();
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
    this.acks.flush(); // a last try to record what was acknowledged
    return { settled: this.inFlight.size === 0, inFlight: this.inFlight.size };
  }

  /** No more pumping; timers cleared. */
  stop(): void {
    this.running = false;
    this.paused = true;
    clearTimeout(this.wakeTimer);
    this.acks.stop();
  }

  /** The seq range of rows sent but not yet marked synced (in flight, or acked and not yet written). */
  inFlightRange(): [number, number] | undefined {
    let lo = Infinity;
    let hi = -Infinity;
    for (const b of this.inFlight.values()) {
      lo = Math.min(lo, b.firstSeq);
      hi = Math.max(hi, b.lastSeq);
    }
    const waiting = this.acks.range();
    if (waiting) {
      lo = Math.min(lo, waiting[0]);
      hi = Math.max(hi, waiting[1]);
    }
    return lo <= hi ? [lo, hi] : undefined;
  }

  /** After a requeue: parked rows may now sit behind the cursor; start again from the oldest. */
  rewind(): void {
    this.needsRewind = true;
    this.pump();
  }
}
