import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { quickCheck } from './integrity.js';
import { isCorruption } from './database.js';

let result: string;
try {
  const db = new Database((workerData as { path: string }).path, { readonly: true, fileMustExist: true });
  try {
    // quick_check reads every page once: a small cache is as fast and keeps the worker light
    // beside a drain (docs/benchmarks.md, "Memory")
    db.pragma('cache_size = -1024');
    result = quickCheck(db);
  } finally {
    db.close();
  }
} catch (err) {
  // SQLITE_BUSY and the like say nothing about damage
  result = isCorruption(err) ? `${(err as { code: string }).code}: ${(err as Error).message}` : `skipped: ${(err as Error).message}`;
}
parentPort!.postMessage(result);
