import { EventEmitter } from 'node:events';
import type { RetentionConfig } from '../config/schema.js';
import type { Tick } from '../sensors/reading.js';
import type { Logger } from '../util/logger.js';
import { firstThenEvery, Repeating } from '../util/log-throttle.js';
import { isCorruption } from './database.js';
import { DiskGuard } from './disk-guard.js';
import { Retention } from './retention.js';
import type { AckWrite, Store } from './store.js';

const STORAGE_FULL = 'STORAGE_FULL';

/** The database is at its cap under the stop-sampling policy: the readings were refused, not stored. */
export class StorageFullError extends Error {
  /** logged with the sampler's other write errors */
  readonly code = STORAGE_FULL;
  constructor() {
    super('storage full (stop-sampling policy): reading not stored');
    this.name = 'StorageFullError';
  }
}

export type KeeperEvents = {
  /** readings were stored (the ticks as committed: live values are taken from them) */
  written: [count: number, ticks: readonly Tick[]];
  /** drop records wait to be announced: `now` (rows were deleted), `soon` (refusals come a tick at a time) */
  dropped: [when: 'now' | 'soon'];
  /** SQLite called the database damaged */
  damaged: [reason: string];
};

const REFUSED = 'storage full (stop-sampling)';

/** Readings held in a commit window at most: past this they are committed at once. */
export const COMMIT_WINDOW_MAX_READINGS = 50_000;

/**
 * Writes that ride on the next append's transaction instead of one of their own: acknowledged rows
 * marked synced (src/sync/ack-book.ts). `written` is called only once that transaction committed.
 */
export interface WriteRider {
  take(): AckWrite | undefined;
  written(w: AckWrite): void;
}

export interface KeeperOptions extends RetentionConfig {
  /** readings wait in memory up to this long and are committed together (database.commitWindowMs; 0: at once) */
  commitWindowMs?: number;
  /** with sync.endToEnd: synced rows above this seq are not deleted by age (the disk guard still may) */
  confirmedThrough?: () => number;
}

/**
 * The store's upkeep while the daemon runs: the way readings go in (refused while full under
 * stop-sampling), the disk guard after every write and on a timer, retention by age, and every
 * reading that could not be stored counted and written down (as soon as the disk lets it).
 */
export class StorageKeeper extends EventEmitter<KeeperEvents> {
  private readonly retention: Retention;
  private readonly guard: DiskGuard;
  private retentionTimer?: NodeJS.Timeout;
  private guardTimer?: NodeJS.Timeout;
  private guardSoon?: NodeJS.Timeout;
  /** readings lost while the loss could not be written down (disk full) */
  private unsavedLost = 0;
  private lastWriteError: string | null = null;
  /** readings waiting for the commit window to close; they get their seq at the commit */
  private held: Tick[] = [];
  private heldCount = 0;
  private windowTimer?: NodeJS.Timeout;
  /** commits of a window that failed: logged when they start, then every 100th */
  private readonly windowTrouble = new Repeating(firstThenEvery(100));

  constructor(
    private readonly store: Store,
    /** the seq range the sync loop has in flight: never dropped */
    private readonly inFlight: { inFlightRange(): [number, number] | undefined },
    private readonly opts: KeeperOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
    private readonly rider?: WriteRider,
  ) {
    super();
    this.retention = new Retention(store, { syncedMaxAgeMs: opts.syncedMaxAge, syncLogMaxRows: opts.syncLogMaxRows, confirmedThrough: opts.confirmedThrough }, log);
    this.guard = new DiskGuard(store, { maxDatabaseBytes: opts.maxDatabaseBytes, minFreeDiskBytes: opts.minFreeDiskBytes, onFull: opts.onFull }, log);
  }

  start(): void {
    this.retentionTimer = setInterval(() => this.runRetention(), this.opts.pruneIntervalMs).unref();
    this.runGuard();
    this.armGuard();
  }

  /**
   * The timer is for what changes on its own (free space) while nothing is written: every write
   * measures the cap and the free space anyway (guard.overLimit) and puts the timer off, so a
   * device that writes more often than checkIntervalMs gets no wake-up of the guard's own.
   */
  private armGuard(): void {
    clearTimeout(this.guardTimer);
    this.guardTimer = setTimeout(() => {
      this.runGuard();
      this.armGuard();
    }, this.opts.checkIntervalMs).unref();
  }

  /** Stops the timers; readings held in a commit window are committed first. */
  stop(): void {
    this.commitHeld();
    clearInterval(this.retentionTimer);
    clearTimeout(this.guardTimer);
    this.guardTimer = undefined;
    clearTimeout(this.guardSoon);
  }

  get acceptingReadings(): boolean {
    return this.guard.acceptingReadings;
  }

  /** Lost readings not written down yet (the CLI's status adds them). */
  get unsaved(): number {
    return this.unsavedLost;
  }

  /** Readings lost for good: written down, and not written down yet. */
  lostTotal(): number {
    const t = this.store.isOpen ? this.store.lossTotals() : { lost: 0, dropped: 0 };
    return t.lost + t.dropped + this.unsavedLost;
  }

  /** Readings held in the commit window, not committed yet. */
  get heldReadings(): number {
    return this.heldCount;
  }

  /**
   * The sampler's sink. Throws StorageFullError (refused, counted) or the store's error (lost,
   * counted). With a commit window the readings are held and committed when it closes (a failure
   * then is counted and logged here: the sampler has moved on).
   */
  appendTicks(ticks: readonly Tick[]): void {
    const window = this.opts.commitWindowMs ?? 0;
    if (window <= 0) return this.commit(ticks);
    for (const t of ticks) {
      this.held.push(t);
      this.heldCount += t.readings.length;
    }
    if (this.heldCount >= COMMIT_WINDOW_MAX_READINGS) this.commitHeld();
    else this.windowTimer ??= setTimeout(() => this.commitHeld(), window);
  }

  /** Commits the readings held in the commit window now (the window closed, SIGTERM, stop). */
  commitHeld(): void {
    clearTimeout(this.windowTimer);
    this.windowTimer = undefined;
    if (this.held.length === 0) return;
    const ticks = this.held;
    const count = this.heldCount;
    this.held = [];
    this.heldCount = 0;
    try {
      this.commit(ticks);
      const failures = this.windowTrouble.ended();
      if (failures > 0) this.log.info({ failures }, 'committing readings works again');
    } catch (err) {
      if (this.windowTrouble.occurred(undefined, count)) this.log.error({ err, lostNow: count }, 'cannot store the readings of a commit window; they are lost');
    }
  }

  private commit(ticks: readonly Tick[]): void {
    let count = 0;
    for (const t of ticks) count += t.readings.length;
    if (!this.guard.acceptingReadings) {
      this.refuse(count);
      throw new StorageFullError();
    }
    try {
      this.appendWithRider(ticks);
    } catch (err) {
      this.lose(count, err as Error & { code?: string });
      throw err;
    }
    this.lastWriteError = null;
    if (this.guard.overLimit()) this.runGuard();
    if (this.guardTimer) this.armGuard();
    this.tell('written', count, ticks);
  }

  /** The append carries what rides on it (acknowledged rows); a failure is never blamed on the rider. */
  private appendWithRider(ticks: readonly Tick[]): void {
    const extra = this.rider?.take();
    if (!extra) {
      this.store.appendTicks(ticks, undefined, this.now());
      return;
    }
    try {
      this.store.appendTicks(ticks, extra, this.now());
    } catch {
      // the readings matter more than their passenger: once more without it (it waits for the next)
      this.store.appendTicks(ticks, undefined, this.now());
      return;
    }
    this.rider?.written(extra);
  }

  /** Refused readings get seqs of their own and are announced upstream as a dropped range. */
  private refuse(count: number): void {
    if (this.store.isOpen) {
      try {
        this.store.recordRefused(count, REFUSED, this.now());
        this.tell('dropped', 'soon');
        return;
      } catch {
        /* not even that could be written: counted as lost below */
      }
    }
    this.unsavedLost += count;
    this.lastWriteError = STORAGE_FULL;
    this.persistLost();
  }

  private lose(count: number, err: Error & { code?: string }): void {
    this.unsavedLost += count;
    this.lastWriteError = err.code ?? err.message;
    if (isCorruption(err)) this.tell('damaged', err.message);
    this.persistLost();
  }

  /** Writes the count of lost readings down; while the disk is full it waits for the next try. */
  persistLost(): void {
    if (this.unsavedLost === 0 || !this.store.isOpen) return;
    const n = this.unsavedLost;
    try {
      this.store.recordLost(n, this.lastWriteError, this.now());
      this.unsavedLost -= n;
    } catch {
      /* still full: the next guard check tries again */
    }
  }

  private runGuard(): void {
    if (!this.guard.enabled && this.unsavedLost === 0) return;
    try {
      this.persistLost();
      const r = this.guard.check(this.inFlight.inFlightRange(), this.now());
      if (r.dropped > 0) this.tell('dropped', 'now');
      // a check does a bounded slice of work; the rest follows after the event loop had its turn
      if (r.more && !this.guardSoon) {
        this.guardSoon = setTimeout(() => {
          this.guardSoon = undefined;
          this.runGuard();
        }, 10);
      }
    } catch (err) {
      if (isCorruption(err)) this.tell('damaged', (err as Error).message);
      else this.log.warn({ err }, 'storage check failed');
    }
  }

  private runRetention(): void {
    try {
      this.retention.run(this.now());
    } catch (err) {
      this.log.warn({ err }, 'retention pass failed');
    }
  }

  /** A listener that throws must not turn a stored reading into a lost one. */
  private tell<E extends keyof KeeperEvents>(event: E, ...args: KeeperEvents[E]): void {
    try {
      (this.emit as (e: E, ...a: KeeperEvents[E]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'a listener of the storage keeper failed');
    }
  }
}
