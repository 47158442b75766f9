import { EventEmitter } from 'node:events';
import type { RetentionConfig } from '../config/schema.js';
import type { Tick } from '../sensors/reading.js';
import type { Logger } from '../util/logger.js';
import { isCorruption } from './database.js';
import { DiskGuard } from './disk-guard.js';
import { Retention } from './retention.js';
import type { Store } from './store.js';

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

  constructor(
    private readonly store: Store,
    /** the seq range the sync loop has in flight: never dropped */
    private readonly inFlight: { inFlightRange(): [number, number] | undefined },
    private readonly opts: RetentionConfig,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.retention = new Retention(store, { syncedMaxAgeMs: opts.syncedMaxAge, syncLogMaxRows: opts.syncLogMaxRows }, log);
    this.guard = new DiskGuard(store, { maxDatabaseBytes: opts.maxDatabaseBytes, minFreeDiskBytes: opts.minFreeDiskBytes, onFull: opts.onFull }, log);
  }

  start(): void {
    this.retentionTimer = setInterval(() => this.runRetention(), this.opts.pruneIntervalMs).unref();
    // the timer is for what changes on its own (free space); the cap grows with writes, checked after each
    this.guardTimer = setInterval(() => this.runGuard(), this.opts.checkIntervalMs).unref();
    this.runGuard();
  }

  stop(): void {
    clearInterval(this.retentionTimer);
    clearInterval(this.guardTimer);
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

  /** The sampler's sink. Throws StorageFullError (refused, counted) or the store's error (lost, counted). */
  appendTicks(ticks: readonly Tick[]): void {
    let count = 0;
    for (const t of ticks) count += t.readings.length;
    if (!this.guard.acceptingReadings) {
      this.refuse(count);
      throw new StorageFullError();
    }
    try {
      this.store.appendTicks(ticks);
    } catch (err) {
      this.lose(count, err as Error & { code?: string });
      throw err;
    }
    this.lastWriteError = null;
    if (this.guard.overLimit()) this.runGuard();
    this.tell('written', count, ticks);
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
