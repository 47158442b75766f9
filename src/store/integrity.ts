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

/** What a damaged database still tells, each figure read on its own (any of them may fail). */
export interface Salvage {
  /** the highest seq it reached (its rows, or the seq floor it had) */
  lastSeq?: number;
  /** readings it held that were never acknowledged: they will not be sent from the fresh database */
  pending?: number;
  lostTotal: number;
  droppedTotal: number;
}

export function readSalvage(path: string): Salvage {
  const out: Salvage = { lostTotal: 0, droppedTotal: 0 };
  let db: Database.Database;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch {
    return out;
  }
  const get = <T>(sql: string, ...args: unknown[]): T | undefined => {
    try {
      return (db.prepare(sql).pluck().get(...args) as T | null) ?? undefined;
    } catch {
      return undefined;
    }
  };
  const config = (key: string) => Number(get<string>('SELECT value FROM config WHERE key = ?', key) ?? 0) || 0;
  try {
    const top = get<number>('SELECT max(rowid) FROM transactions');
    const floor = config('seq_floor');
    if (top !== undefined || floor > 0) out.lastSeq = Math.max(top ?? 0, floor);
    out.pending = get<number>('SELECT count(*) FROM transactions WHERE synced = 0');
    out.lostTotal = config('lost_total');
    out.droppedTotal = config('dropped_total');
  } finally {
    db.close();
  }
  return out;
}
