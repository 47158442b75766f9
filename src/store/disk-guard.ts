import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../util/logger.js';
import type { Store } from './store.js';
import { giveBackPages, pageStats, truncateWal } from './space.js';

export interface DiskGuardOptions {
  /** the database (file + WAL) must stay under this; 0: no cap */
  maxDatabaseBytes: number;
  /** the file system holding the database must keep this much free; 0: no watermark */
  minFreeDiskBytes: number;
  /** with only unsynced rows left: drop the oldest, or stop taking new readings */
  onFull: 'drop-oldest' | 'stop-sampling';
  /** the most time one check spends deleting before it gives back and returns (default 50 ms) */
  sliceMs?: number;
}

export interface GuardResult {
  sizeBytes: number;
  freeBytes: number | undefined;
  syncedDeleted: number;
  dropped: number;
  accepting: boolean;
  /** over a limit still, with work left: check again soon */
  more: boolean;
}

const CHUNK = 5000;
/** 16 MB of 4 KiB pages */
const GIVE_BACK_PAGES = 4096;

/**
 * Keeps the database within its cap and the disk above its free-space watermark. Synced rows go
 * first (any age); when only unsynced rows are left the policy decides: drop the oldest (counted,
 * remembered, announced upstream) or stop sampling (counted). Space is returned to the file
 * system with incremental vacuum and a WAL truncation, a chunk at a time.
 */
export class DiskGuard {
  private accepting = true;
  /** what the slices of one stretch over a limit did, logged once at its end */
  private stretch = { syncedDeleted: 0, dropped: 0 };
  /** bytes one write adds (the largest growth of the last writes, with a margin) */
  private growth = 0;
  private readonly recentGrowth: number[] = [];
  private lastWriteSize?: number;
  private readonly deleteSyncedChunk;
  private readonly pageSize: number;

  constructor(
    private readonly store: Store,
    private readonly opts: DiskGuardOptions,
    private readonly log: Logger,
    private readonly fsOf: (dir: string) => { free: number; total: number } = (dir) => {
      const s = statfsSync(dir);
      return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
    },
  ) {
    this.pageSize = pageStats(store.db).pageSize;
    this.deleteSyncedChunk = store.db.prepare(
      `DELETE FROM transactions WHERE rowid IN (
         SELECT rowid FROM transactions WHERE synced = 1 AND rowid < (SELECT max(rowid) FROM transactions) ORDER BY rowid LIMIT ?)`,
    );
  }

  get enabled(): boolean {
    return this.opts.maxDatabaseBytes > 0 || this.opts.minFreeDiskBytes > 0;
  }

  /** Whether the sampler may store new readings (false only under stop-sampling when full). */
  get acceptingReadings(): boolean {
    return this.accepting;
  }

  /**
   * The watermark in force: the configured one, but never more than a tenth of the file system,
   * so that a small data partition (a 64 MB tmpfs, say) is not "always low" and emptied of every
   * unsent reading.
   */
  private watermark(total: number): number {
    return Math.min(this.opts.minFreeDiskBytes, Math.floor(total / 10));
  }

  /**
   * `size` is the database file and its WAL; `need` counts the WAL twice, because a checkpoint
   * copies its pages into the database file before it truncates the WAL: for that moment the
   * files take that much, and a cap that is to hold at every moment must leave room for it.
   */
  private measure(): { size: number; need: number; free: number | undefined; watermark: number; excess: number; toLowWater: number } {
    const f = this.store.fileSizes();
    const size = f.db + f.wal;
    const need = f.db + 2 * f.wal;
    let free: number | undefined;
    let watermark = 0;
    if (this.opts.minFreeDiskBytes > 0) {
      try {
        const fs = this.fsOf(dirname(this.store.path));
        free = fs.free;
        watermark = this.watermark(fs.total);
      } catch {
        free = undefined;
      }
    }
    const overCap = this.opts.maxDatabaseBytes > 0 ? need + this.growth - this.opts.maxDatabaseBytes : 0;
    const underFree = free !== undefined ? watermark - free : 0;
    // once over a limit, free space down to a low-water mark so that the next readings do not
    // trip it again at once (room = 10% of the cap, or 10% of the watermark plus 1 MB)
    const overLow = this.opts.maxDatabaseBytes > 0 ? need + this.growth - this.opts.maxDatabaseBytes * 0.9 : 0;
    const underLow = free !== undefined ? watermark * 1.1 + Math.min(1_000_000, watermark) - free : 0;
    const excess = Math.max(0, overCap, underFree);
    return { size, need, free, watermark, excess, toLowWater: Math.max(0, overLow, underLow) };
  }

  /**
   * Whether the database is past its cap or the disk below its watermark right now: two stat
   * calls, cheap enough to ask after every write, so that a fast writer cannot outgrow the cap
   * by a whole check interval.
   */
  overLimit(): boolean {
    if (!this.enabled) return false;
    // how much one write (and the acknowledgements since the one before) adds: the cap is held
    // that far ahead, so that the next write lands under it rather than past it
    const f = this.store.fileSizes();
    const size = f.db + 2 * f.wal; // as measure() counts it
    const grew = this.lastWriteSize === undefined ? 0 : Math.max(0, size - this.lastWriteSize);
    this.recentGrowth.push(grew);
    if (this.recentGrowth.length > 8) this.recentGrowth.shift();
    // the largest of the last few, with a quarter more: one larger tick must still fit
    this.growth = Math.max(...this.recentGrowth) * 1.25;
    this.lastWriteSize = size;
    return this.measure().excess > 0;
  }

  /**
   * One check; cheap when within limits. `protect` is the seq range in flight (never dropped).
   * The work of one call is bounded (`sliceMs` of deleting, then one give-back): a first trip
   * over a cap of a gigabyte would otherwise hold the event loop for seconds (sampling ticks
   * skipped, keepalives and PUBACKs unanswered). `more` says that it is not done: call again soon.
   */
  check(protect?: [number, number], nowMs: number = Date.now()): GuardResult {
    let m = this.measure();
    let syncedDeleted = 0;
    let dropped = 0;
    if (m.excess === 0 && (this.accepting || this.hasRoom(m))) {
      // hysteresis: resume only with some room, not at the first free byte
      if (!this.accepting) {
        this.accepting = true;
        this.log.warn({ sizeBytes: m.size, freeBytes: m.free }, 'room again: storing readings again');
      }
      return { sizeBytes: m.size, freeBytes: m.free, syncedDeleted, dropped, accepting: this.accepting, more: false };
    }
    // 0. pages freed by earlier deletes may still sit in the file
    let givenBack = this.giveBack();
    m = this.measure();
    const deadline = performance.now() + (this.opts.sliceMs ?? 50);
    // free pages inside the file (freed by deletes, not given back yet) count as room already:
    // without this, a call that follows one whose give-back was cut short would delete again
    const freed = () => pageStats(this.store.db).freePages * this.pageSize;
    // at least one chunk per call, more while the slice lasts
    const inTime = () => performance.now() < deadline;
    // a delete needs WAL room for the pages it changes: chunks of at most a twentieth of the cap,
    // so that bringing the file under the cap does not push it over on the way
    const chunk = this.opts.maxDatabaseBytes > 0 ? Math.max(100, Math.min(CHUNK, Math.floor(this.opts.maxDatabaseBytes / 20 / this.bytesPerRow()))) : CHUNK;
    // 1. synced rows, oldest first, whatever their age
    let syncedLeft = true;
    while (m.toLowWater - freed() > 0) {
      const n = this.deleteSyncedChunk.run(chunk).changes;
      syncedDeleted += n;
      // each chunk given back at once: a delete needs WAL room, and chunks piling up in the WAL
      // would push the file past the cap while it is being brought under it
      givenBack += this.giveBack();
      m = this.measure();
      if (n < chunk) syncedLeft = false;
      if (!syncedLeft || !inTime()) break;
    }
    // 2. only unsynced rows left (or not enough synced ones)
    if (!syncedLeft && (inTime() || syncedDeleted === 0) && m.excess - freed() > 0) {
      if (this.opts.onFull === 'drop-oldest') {
        const reason = this.opts.maxDatabaseBytes > 0 && m.need + this.growth > this.opts.maxDatabaseBytes ? 'database cap' : 'low disk space';
        while (m.toLowWater - freed() > 0) {
          const n = Math.max(100, Math.min(chunk, Math.ceil((m.toLowWater - freed()) / this.bytesPerRow())));
          const r = this.store.dropOldestUnsynced(n, reason, protect, nowMs);
          dropped += r.count;
          givenBack += this.giveBack();
          m = this.measure();
          if (r.count === 0 || !inTime()) break;
        }
      } else if (this.accepting) {
        this.accepting = false;
        this.log.error({ sizeBytes: m.size, freeBytes: m.free, capBytes: this.opts.maxDatabaseBytes }, 'storage full: not storing new readings until there is room (each one gets a seq, is counted and is announced upstream as dropped)');
      }
    }
    givenBack += this.giveBack();
    m = this.measure();
    // what the next write adds is measured from here, not from before this shrinking
    this.lastWriteSize = m.need;
    if (m.excess === 0 && !this.accepting && this.hasRoom(m)) {
      this.accepting = true;
      this.log.warn({ sizeBytes: m.size, freeBytes: m.free }, 'room again: storing readings again');
    }
    // not done yet, and this call got somewhere (deleted rows, or gave pages back): again soon
    const more = m.toLowWater > 0 && (syncedDeleted > 0 || dropped > 0 || givenBack > 0);
    // one log line per stretch of slices, with its totals, not one per slice
    this.stretch.syncedDeleted += syncedDeleted;
    this.stretch.dropped += dropped;
    if (!more) {
      const t = this.stretch;
      if (t.dropped > 0) this.log.error({ dropped: t.dropped, sizeBytes: m.size, freeBytes: m.free, capBytes: this.opts.maxDatabaseBytes }, 'storage full: dropped the oldest unsynced readings (counted, announced upstream)');
      if (t.syncedDeleted > 0) this.log.info({ syncedDeleted: t.syncedDeleted, sizeBytes: m.size }, 'storage cap: deleted synced rows early');
      this.stretch = { syncedDeleted: 0, dropped: 0 };
    }
    return { sizeBytes: m.size, freeBytes: m.free, syncedDeleted, dropped, accepting: this.accepting, more };
  }

  private hasRoom(m: { need: number; free: number | undefined; watermark: number }): boolean {
    const capOk = this.opts.maxDatabaseBytes === 0 || m.need + this.growth < this.opts.maxDatabaseBytes * 0.9;
    const freeOk = m.free === undefined || m.free > m.watermark * 1.1 + Math.min(1_000_000, m.watermark);
    return capOk && freeOk;
  }

  private bytesPerRow(): number {
    const rows = Math.max(1, this.store.stats().lastSeq - this.store.minSeq() + 1);
    return Math.max(50, pageStats(this.store.db).usedBytes / rows);
  }

  /**
   * Free pages back to the file system (at most GIVE_BACK_PAGES a call: moving pages costs time)
   * and the WAL truncated, so the file really shrinks. Returns the pages given back.
   */
  private giveBack(): number {
    const pages = giveBackPages(this.store.db, GIVE_BACK_PAGES);
    truncateWal(this.store.db); // a reader holding the WAL: truncated at a later check
    return pages;
  }
}
