import type { SqliteDb } from './database.js';

const PENDING = 'synced = 0 AND parked_at IS NULL';

/**
 * The oldest pending rows after a seq, with the limit written into the statement: SQLite
 * (with STAT4, as better-sqlite3 builds it) prepares a statement again each time a new value is
 * bound to a LIMIT parameter, which was a few per cent of a device's CPU (docs/benchmarks.md).
 */
export function prepareTakePending(db: SqliteDb, limit: number) {
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`limit must be a positive integer, not ${limit}`);
  return db.prepare(
    `SELECT id, seq, timestamp AS ts, sensor, amount AS value, unit, description, flags
     FROM transactions WHERE ${PENDING} AND seq > ? ORDER BY seq LIMIT ${limit}`,
  );
}

/** Every statement the Store runs, prepared once per connection. */
export function prepareStatements(db: SqliteDb) {
  return {
    maxSeq: db.prepare('SELECT max(rowid) AS m FROM transactions'),
    // the newest seq and the floor in one statement: it runs in every append's transaction
    seqAndFloor: db.prepare(`SELECT (SELECT max(rowid) FROM transactions) AS m, (SELECT value FROM config WHERE key = 'seq_floor') AS floor`),
    insert: db.prepare(
      `INSERT INTO transactions (rowid, id, timestamp, amount, description, sensor, unit, seq, flags)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    // one statement per batch, the seqs as a JSON array, not one call per row (docs/benchmarks.md, "Drain")
    markSynced: db.prepare(`UPDATE transactions SET synced = 1, sync_timestamp = ? WHERE rowid IN (SELECT value FROM json_each(?)) AND synced = 0`),
    attemptUnknown: db.prepare(`UPDATE transactions SET retry_count = retry_count + 1 WHERE rowid = ? AND ${PENDING}`),
    attemptRejected: db.prepare(
      `UPDATE transactions SET retry_count = retry_count + 1, reject_count = reject_count + 1,
         parked_at = CASE WHEN reject_count + 1 >= ? THEN ? ELSE NULL END,
         park_reason = CASE WHEN reject_count + 1 >= ? THEN ? ELSE NULL END
       WHERE rowid = ? AND ${PENDING} RETURNING parked_at IS NOT NULL AS parked`,
    ),
    park: db.prepare(`UPDATE transactions SET retry_count = retry_count + 1, reject_count = reject_count + 1, parked_at = ?, park_reason = ? WHERE rowid = ? AND ${PENDING}`),
    requeueAll: db.prepare(`UPDATE transactions SET parked_at = NULL, park_reason = NULL, reject_count = 0 WHERE parked_at IS NOT NULL AND synced = 0`),
    // through the parked index: ids are not indexed (migration 3 -> 4)
    requeueId: db.prepare(`UPDATE transactions SET parked_at = NULL, park_reason = NULL, reject_count = 0 WHERE parked_at IS NOT NULL AND id = ? AND synced = 0`),
    parkedByReason: db.prepare(
      `SELECT coalesce(park_reason, 'refused by the broker') AS reason, count(*) AS rows, min(seq) AS firstSeq, max(seq) AS lastSeq
       FROM transactions WHERE parked_at IS NOT NULL GROUP BY 1 ORDER BY 3`,
    ),
    parkedRows: db.prepare(
      `SELECT id, seq, timestamp AS ts, sensor, length(description) AS descriptionChars, parked_at AS parkedAt, coalesce(park_reason, 'refused by the broker') AS reason
       FROM transactions WHERE parked_at IS NOT NULL ORDER BY seq LIMIT ?`,
    ),
    countPending: db.prepare(`SELECT count(*) AS n FROM transactions WHERE ${PENDING}`),
    countParked: db.prepare(`SELECT count(*) AS n FROM transactions WHERE parked_at IS NOT NULL`),
    oldestPending: db.prepare(`SELECT timestamp FROM transactions WHERE ${PENDING} ORDER BY seq LIMIT 1`),
    getConfig: db.prepare('SELECT value FROM config WHERE key = ?'),
    setConfig: db.prepare(
      `INSERT INTO config (key, value, last_updated) VALUES (?, ?, ?)
       ON CONFLICT(key) DO UPDATE SET value = excluded.value, last_updated = excluded.last_updated`,
    ),
    addConfigInt: db.prepare(
      // CAST on the way in too: a JS number is bound as REAL, and a first insert stored '7.0'
      `INSERT INTO config (key, value, last_updated) VALUES (?, CAST(? AS INTEGER), ?)
       ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + CAST(excluded.value AS INTEGER), last_updated = excluded.last_updated`,
    ),
    logEvent: db.prepare('INSERT INTO sync_log (timestamp, event_type, details) VALUES (?, ?, ?)'),
    recentLog: db.prepare('SELECT id, timestamp, event_type, details FROM sync_log WHERE id > ? ORDER BY id DESC LIMIT ?'),
    pruneLog: db.prepare('DELETE FROM sync_log WHERE id <= (SELECT max(id) FROM sync_log) - ?'),
    retryStats: db.prepare(`SELECT count(*) AS rows, coalesce(max(retry_count), 0) AS maxRetry FROM transactions WHERE ${PENDING} AND retry_count > 0`),
    unannounced: db.prepare('SELECT id, timestamp, from_seq AS fromSeq, to_seq AS toSeq, count, reason FROM dropped WHERE announced_at IS NULL ORDER BY id LIMIT ?'),
    announce: db.prepare('UPDATE dropped SET announced_at = ? WHERE id = ?'),
    insertDrop: db.prepare('INSERT INTO dropped (timestamp, from_seq, to_seq, count, reason) VALUES (?, ?, ?, ?, ?)'),
    lastUnannounced: db.prepare('SELECT id, to_seq AS toSeq, reason FROM dropped WHERE announced_at IS NULL ORDER BY id DESC LIMIT 1'),
    extendDrop: db.prepare('UPDATE dropped SET to_seq = ?, count = count + ? WHERE id = ?'),
    oldestUnsynced: db.prepare('SELECT rowid AS r FROM transactions WHERE synced = 0 AND (rowid < ? OR rowid > ?) ORDER BY rowid LIMIT ?'),
    deleteRow: db.prepare('DELETE FROM transactions WHERE rowid = ?'),
    minSeq: db.prepare('SELECT min(rowid) FROM transactions').pluck(),
    reading: db.prepare('SELECT id, seq, timestamp, sensor, amount, unit, description FROM transactions WHERE seq = ?'),
    lastEventOf: db.prepare('SELECT id, timestamp, event_type, details FROM sync_log WHERE event_type IN (SELECT value FROM json_each(?)) ORDER BY id DESC LIMIT 1'),
  };
}
