import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from '../util/logger.js';
import type { Store } from './store.js';

export interface DiskGuardOptions {
  /** the database (file + WAL) must stay under this; 0: no cap */
  maxDatabaseBytes: number;
  /** the file system holding the database must keep this much free; 0: no watermark */
  minFreeDiskBytes: number;
  /** with only unsynced rows left: drop the oldest, or stop taking new readings */
  onFull: 'drop-oldest' | 'stop-sampling';
}

export interface GuardResult {
  sizeBytes: number;
  freeBytes: number | undefined;
  syncedDeleted: number;
  dropped: number;
  accepting: boolean;
}

const CHUNK = 5000;

/**
 * Keeps the database within its cap and the disk above its free-space watermark. Synced rows go
 * first (any age); when only unsynced rows are left the policy decides: drop the oldest (counted,
 * remembered, announced upstream) or stop sampling (counted). Space is returned to the file
 * system with incremental vacuum and a WAL truncation, a chunk at a time.
 */
export class DiskGuard {
  private accepting = true;
  private readonly deleteSyncedChunk;

  constructor(
    private readonly store: Store,
    private readonly opts: DiskGuardOptions,
    private readonly log: Logger,
    private readonly fsOf: (dir: string) => { free: number; total: number } = (dir) => {
      const s = statfsSync(dir);
      return { free: s.bavail * s.bsize, total: s.blocks * s.bsize };
    },
  ) {
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

  private measure(): { size: number; free: number | undefined; watermark: number; excess: number; toLowWater: number } {
    const size = this.store.fileBytes();
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
    const overCap = this.opts.maxDatabaseBytes > 0 ? size - this.opts.maxDatabaseBytes : 0;
    const underFree = free !== undefined ? watermark - free : 0;
    // once over a limit, free space down to a low-water mark so that the next readings do not
    // trip it again at once (room = 10% of the cap, or 10% of the watermark plus 1 MB)
    const overLow = this.opts.maxDatabaseBytes > 0 ? size - this.opts.maxDatabaseBytes * 0.9 : 0;
    const underLow = free !== undefined ? watermark * 1.1 + Math.min(1_000_000, watermark) - free : 0;
    const excess = Math.max(0, overCap, underFree);
    return { size, free, watermark, excess, toLowWater: Math.max(0, overLow, underLow) };
  }

  /**
   * Whether the database is past its cap or the disk below its watermark right now: two stat
   * calls, cheap enough to ask after every write, so that a fast writer cannot outgrow the cap
   * by a whole check interval.
   */
  overLimit(): boolean {
    return this.enabled && this.measure().excess > 0;
  }

  /** One check; cheap when within limits. `protect` is the seq range in flight (never dropped). */
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
      return { sizeBytes: m.size, freeBytes: m.free, syncedDeleted, dropped, accepting: this.accepting };
    }
    // 0. pages freed by earlier deletes may still sit in the file
    this.giveBack();
    m = this.measure();
    // 1. synced rows, oldest first, whatever their age
    for (let i = 0; i < 50 && m.toLowWater > 0; i++) {
      const n = this.deleteSyncedChunk.run(CHUNK).changes;
      syncedDeleted += n;
      this.giveBack();
      m = this.measure();
      if (n < CHUNK) break;
    }
    // 2. only unsynced rows left (or not enough synced ones)
    if (m.excess > 0) {
      if (this.opts.onFull === 'drop-oldest') {
        for (let i = 0; i < 50 && m.toLowWater > 0; i++) {
          const perRow = this.bytesPerRow();
          const n = Math.max(100, Math.min(50_000, Math.ceil(m.toLowWater / perRow)));
          const r = this.store.dropOldestUnsynced(n, this.opts.maxDatabaseBytes > 0 && m.size > this.opts.maxDatabaseBytes ? 'database cap' : 'low disk space', protect, nowMs);
          dropped += r.count;
          this.giveBack();
          m = this.measure();
          if (r.count === 0) break;
        }
        if (dropped > 0) this.log.error({ dropped, sizeBytes: m.size, freeBytes: m.free, capBytes: this.opts.maxDatabaseBytes }, 'storage full: dropped the oldest unsynced readings (counted, announced upstream)');
      } else if (this.accepting) {
        this.accepting = false;
        this.log.error({ sizeBytes: m.size, freeBytes: m.free, capBytes: this.opts.maxDatabaseBytes }, 'storage full: not storing new readings until there is room (each one is counted as lost)');
      }
    }
    if (m.excess === 0 && !this.accepting && this.hasRoom(m)) {
      this.accepting = true;
      this.log.warn({ sizeBytes: m.size, freeBytes: m.free }, 'room again: storing readings again');
    }
    if (syncedDeleted > 0) this.log.info({ syncedDeleted, sizeBytes: m.size }, 'storage cap: deleted synced rows early');
    return { sizeBytes: m.size, freeBytes: m.free, syncedDeleted, dropped, accepting: this.accepting };
  }

  private hasRoom(m: { size: number; free: number | undefined; watermark: number }): boolean {
    const capOk = this.opts.maxDatabaseBytes === 0 || m.size < this.opts.maxDatabaseBytes * 0.9;
    const freeOk = m.free === undefined || m.free > m.watermark * 1.1 + Math.min(1_000_000, m.watermark);
    return capOk && freeOk;
  }

  private bytesPerRow(): number {
    const rows = Math.max(1, this.store.stats().lastSeq - this.store.minSeq() + 1);
    return Math.max(50, this.store.pageStats().usedBytes / rows);
  }

  /** Free pages back to the file system and the WAL truncated, so the file really shrinks. */
  private giveBack(): void {
    const free = this.store.db.pragma('freelist_count', { simple: true }) as number;
    if (free > 0) this.store.db.pragma(`incremental_vacuum(${free})`);
    try {
      this.store.db.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      /* a reader holds the WAL: it is truncated at a later check */
    }
  }
}
