import type { SqliteDb } from './database.js';

/** The database's pages: their size, how many, how many are free (inside the file), the bytes really used. */
export function pageStats(db: SqliteDb): { pageSize: number; pages: number; freePages: number; usedBytes: number } {
  const pageSize = db.pragma('page_size', { simple: true }) as number;
  const pages = db.pragma('page_count', { simple: true }) as number;
  const freePages = db.pragma('freelist_count', { simple: true }) as number;
  return { pageSize, pages, freePages, usedBytes: (pages - freePages) * pageSize };
}

/**
 * Gives up to `maxPages` free pages back to the file system (incremental auto-vacuum: a bounded
 * step, never a long VACUUM). Returns how many it gave back.
 */
export function giveBackPages(db: SqliteDb, maxPages: number): number {
  const free = db.pragma('freelist_count', { simple: true }) as number;
  if (free === 0) return 0;
  db.pragma(`incremental_vacuum(${Math.min(free, maxPages)})`);
  return free - (db.pragma('freelist_count', { simple: true }) as number);
}

/** Copies the WAL into the database and truncates it, so the files really shrink; false while a reader holds the WAL. */
export function truncateWal(db: SqliteDb): boolean {
  try {
    db.pragma('wal_checkpoint(TRUNCATE)');
    return true;
  } catch {
    return false;
  }
}
