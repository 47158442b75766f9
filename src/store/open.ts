import type { DatabaseConfig } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import { isCorruption, StoreOpenError } from './database.js';
import { moveAside, quickCheck, quickCheckInBackground, readSalvage, SYNC_CHECK_MAX_BYTES, type Salvage } from './integrity.js';
import { Store } from './store.js';

/**
 * Opens the daemon's database. One that SQLite or quick_check (run before starting on files small
 * enough) finds damaged is moved aside, never deleted, and a fresh one started in its place.
 * `replaceReason`: it was found damaged while running; replace it at once. Throws StoreOpenError
 * when the database cannot be used at all.
 */
export function openStore(config: DatabaseConfig, log: Logger, now: () => number, replaceReason?: string): Store {
  const store = open(config, log, now, replaceReason);
  const st = store.stats();
  log.info({ module: 'store', path: config.path, pending: st.pending, parked: st.parked, lastSeq: st.lastSeq }, 'database open');
  return store;
}

function open(config: DatabaseConfig, log: Logger, now: () => number, replaceReason: string | undefined): Store {
  const create = () => new Store(config.path, { synchronous: config.synchronous, busyTimeoutMs: config.busyTimeoutMs, create: true });
  const replace = (reason: string) => replaceDamaged(config.path, reason, create, log, now());
  if (replaceReason) return replace(replaceReason);
  let store: Store;
  try {
    store = create();
  } catch (err) {
    if (err instanceof StoreOpenError && err.kind === 'corrupt') return replace(err.message);
    throw err;
  }
  const verdict = checkNow(store);
  if (verdict !== 'ok') {
    store.close();
    return replace(`integrity check: ${verdict}`);
  }
  log.debug({ bytes: store.fileBytes() }, 'database opened');
  return store;
}

/** 'ok' or what is wrong: reads the pending index and the tables' roots; small files get a full quick_check too. */
function checkNow(store: Store): string {
  try {
    store.stats();
    return store.fileBytes() <= SYNC_CHECK_MAX_BYTES ? quickCheck(store.db) : 'ok';
  } catch (err) {
    if (isCorruption(err)) return (err as Error).message;
    store.close();
    throw err;
  }
}

/** Large databases are checked after the start, in a worker thread, so start-up stays fast. Resolves with what is wrong, if anything. */
export async function checkInBackground(store: Store): Promise<string | undefined> {
  if (store.fileBytes() <= SYNC_CHECK_MAX_BYTES) return undefined;
  const verdict = await quickCheckInBackground(store.path);
  return verdict === 'ok' || verdict.startsWith('skipped') ? undefined : `integrity check: ${verdict}`;
}

function replaceDamaged(path: string, reason: string, create: () => Store, log: Logger, nowMs: number): Store {
  const old = readSalvage(path);
  const movedTo = moveAside(path, nowMs);
  log.fatal(
    { path, movedTo, reason, lastSeq: old.lastSeq, pendingLeftBehind: old.pending ?? 'unknown' },
    'DATABASE DAMAGED: moved it aside (kept, not deleted) and started a fresh one; unsynced readings in it are not sent (counted as lost)',
  );
  const store = create();
  carryOver(store, old, { movedTo, reason });
  return store;
}

/**
 * The fresh database carries on what the old one knew: seq above its highest, its loss counts, and
 * the readings it still held unsent, counted as lost (they can be salvaged from the kept file).
 */
function carryOver(store: Store, old: Salvage, why: { movedTo: string; reason: string }): void {
  store.db
    .transaction(() => {
      if (old.lastSeq !== undefined) store.setSeqFloor(old.lastSeq);
      const lost = old.lostTotal + (old.pending ?? 0);
      if (lost > 0) store.addConfigInt('lost_total', lost);
      if (old.droppedTotal > 0) store.addConfigInt('dropped_total', old.droppedTotal);
      store.logEvent('database_replaced', { ...why, lastSeq: old.lastSeq ?? null, pendingLeftBehind: old.pending ?? null });
    })
    .immediate();
}
