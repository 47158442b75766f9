import type { Logger } from '../util/logger.js';
import type { Store } from './store.js';
import { giveBackPages, pageStats } from './space.js';

/** Retention gives free pages back only past both of these (see Retention.vacuum). */
export const VACUUM_MIN_FREE_BYTES = 1024 * 1024;
export const VACUUM_MIN_FREE_SHARE = 0.25;

export interface RetentionOptions {
  /** synced rows older than this (by sync time) are deleted */
  syncedMaxAgeMs: number;
  syncLogMaxRows: number;
  /** rows deleted per transaction: keeps each step short so sampling never stalls */
  chunkRows?: number;
  /** free pages given back to the file system per step */
  vacuumPages?: number;
  /**
   * With end to end on (sync.endToEnd): the seq through which the collector confirmed it stored
   * every reading; synced rows above it are kept whatever their age
   */
  confirmedThrough?: () => number;
}

/**
 * Keeps the database bounded: deletes synced rows once they are old enough, keeps the newest
 * sync_log events, and gives freed pages back to the file system a little at a time
 * (incremental auto-vacuum, no long VACUUM). Pending rows are never touched here.
 */
export class Retention {
  private readonly scan;
  private readonly del;
  private readonly maxSeq;

  constructor(
    private readonly store: Store,
    private readonly opts: RetentionOptions,
    private readonly log: Logger,
  ) {
    const db = store.db;
    this.scan = db.prepare('SELECT rowid AS r, synced AS s, sync_timestamp AS t FROM transactions WHERE rowid > ? ORDER BY rowid LIMIT ?');
    this.del = db.prepare('DELETE FROM transactions WHERE rowid = ? AND synced = 1');
    this.maxSeq = db.prepare('SELECT max(rowid) FROM transactions').pluck();
  }

  /**
   * One pass; returns what it removed. Walks from the oldest row, deletes synced rows synced
   * before the cutoff, steps over pending and parked rows (never touched), and stops at the first
   * synced row that is still young (or not yet confirmed stored by the collector): rows are synced
   * roughly in seq order, so the rest are younger.
   * The walk is bounded (maxRowsPerPass) so that a large backlog at the front costs little.
   * The newest row is always kept so that seq = max(rowid)+1 never goes back.
   */
  run(nowMs: number = Date.now(), maxRowsPerPass = 100_000): { syncedDeleted: number; logDeleted: number; pagesFreed: number } {
    const cutoff = new Date(nowMs - this.opts.syncedMaxAgeMs).toISOString();
    const chunk = this.opts.chunkRows ?? 5000;
    const newest = (this.maxSeq.get() as number | null) ?? 0;
    // a confirmation can only hold a deletion back, never bring one forward
    const confirmed = this.opts.confirmedThrough?.() ?? Infinity;
    let after = 0;
    let examined = 0;
    let syncedDeleted = 0;
    let young = false;
    const all: number[] = [];
    while (!young && examined < maxRowsPerPass) {
      const rows = this.scan.all(after, chunk) as Array<{ r: number; s: number; t: string | null }>;
      if (rows.length === 0) break;
      const doomed: number[] = [];
      for (const row of rows) {
        if (row.s === 1) {
          if (row.t !== null && row.t < cutoff && row.r <= confirmed) {
            if (row.r !== newest) doomed.push(row.r);
          } else {
            young = true;
            break;
          }
        }
        after = row.r;
      }
      examined += rows.length;
      all.push(...doomed);
    }
    // one transaction for a pass (the log's pruning included): a commit rewrites the pages it
    // touches, and a pass of a device past its first days deletes a minute of rows
    let logDeleted = 0;
    for (let i = 0; i === 0 || i < all.length; i += chunk) {
      const slice = all.slice(i, i + chunk);
      this.store.db.transaction(() => {
        for (const r of slice) syncedDeleted += this.del.run(r).changes;
        if (i === 0) logDeleted = this.store.pruneLog(this.opts.syncLogMaxRows);
      }).immediate();
    }
    const pagesFreed = this.vacuum();
    if (syncedDeleted > 0 || logDeleted > 0) {
      this.log.debug({ syncedDeleted, logDeleted, pagesFreed, examined }, 'retention pass');
    }
    return { syncedDeleted, logDeleted, pagesFreed };
  }

  /**
   * Returns up to vacuumPages free pages to the file system, but only once a quarter of the file
   * (and at least 1 MB) is free: moving pages to the front rewrites them, and a pass that deleted a
   * minute of rows would otherwise rewrite pages every minute for a few KB given back. Free pages
   * are reused by new rows meanwhile; the disk guard gives space back at once when over its cap.
   */
  vacuum(): number {
    const { pageSize, pages, freePages } = pageStats(this.store.db);
    if (freePages * pageSize < VACUUM_MIN_FREE_BYTES || freePages < pages * VACUUM_MIN_FREE_SHARE) return 0;
    return giveBackPages(this.store.db, this.opts.vacuumPages ?? 2048);
  }
}
