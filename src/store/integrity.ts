import { existsSync, renameSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';

/** Databases up to this size are checked before the daemon starts; larger ones in the background. */
export const SYNC_CHECK_MAX_BYTES = 64 * 1024 * 1024;

/** SQLite's quick_check: 'ok' or the first problem it found. */
export function quickCheck(db: Database.Database): string {
  const rows = db.pragma('quick_check(1)') as Array<{ quick_check: string }>;
  return rows[0]?.quick_check ?? 'no answer';
}

/** Runs quick_check on its own read-only connection in a worker thread: the event loop keeps running. */
export function quickCheckInBackground(path: string): Promise<string> {
  return new Promise((resolve) => {
    const worker = new Worker(new URL('./integrity-worker.js', import.meta.url), { workerData: { path } });
    worker.once('message', (m: string) => resolve(m));
    worker.once('error', (err) => resolve(`check failed: ${err.message}`));
    worker.once('exit', (code) => resolve(code === 0 ? 'ok' : `check worker exited with ${code}`));
  });
}

/**
 * Moves a damaged database (and its WAL and shared-memory files) aside, never deleting it:
 * edge.db -> edge.db.damaged-20261126T100000Z (+ -wal, -shm). Returns the new path.
 */
export function moveAside(path: string, nowMs: number = Date.now()): string {
  const stamp = new Date(nowMs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  let target = `${path}.damaged-${stamp}`;
  for (let i = 1; existsSync(target); i++) target = `${path}.damaged-${stamp}-${i}`;
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, target + suffix);
  }
  return target;
}

/** The highest seq a damaged database still shows, if it can be read at all. */
export function readLastSeq(path: string): number | undefined {
  try {
    const db = new Database(path, { readonly: true, fileMustExist: true });
    try {
      return (db.prepare('SELECT max(rowid) FROM transactions').pluck().get() as number | null) ?? undefined;
    } finally {
      db.close();
    }
  } catch {
    return undefined;
  }
}
