import { statfsSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';

/**
 * Forward migrations, indexed by the version they start from (PRAGMA user_version).
 * Never edit a shipped migration: add a new one.
 */
export const MIGRATIONS: Array<(db: Database.Database) => void> = [
  // 0 -> 1: the original demo's three tables, with the columns a reading needs.
  (db) => {
    db.exec(`
      CREATE TABLE transactions (
        id             TEXT PRIMARY KEY,          -- UUIDv7, time-ordered
        timestamp      TEXT NOT NULL,             -- ISO 8601 UTC, milliseconds
        amount         REAL,                      -- the reading's value
        description    TEXT,
        synced         INTEGER NOT NULL DEFAULT 0,
        sync_timestamp TEXT,
        retry_count    INTEGER NOT NULL DEFAULT 0, -- failed attempts of any kind
        sensor         TEXT NOT NULL,
        unit           TEXT,
        seq            INTEGER NOT NULL,          -- per-device, strictly increasing; also the rowid
        reject_count   INTEGER NOT NULL DEFAULT 0, -- refusals by the broker; parks at sync.retry.maxAttempts
        parked_at      TEXT,                      -- set when parked: excluded from sync until requeued
        flags          INTEGER NOT NULL DEFAULT 0  -- bit 0: clock was not trustworthy when sampled
      );
      -- pending rows oldest first, without touching synced ones
      CREATE INDEX transactions_pending ON transactions(seq) WHERE synced = 0 AND parked_at IS NULL;
      CREATE INDEX transactions_parked ON transactions(seq) WHERE parked_at IS NOT NULL;

      CREATE TABLE sync_log (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp  TEXT NOT NULL,
        event_type TEXT NOT NULL,
        details    TEXT
      );

      CREATE TABLE config (
        key          TEXT PRIMARY KEY,
        value        TEXT,
        last_updated TEXT NOT NULL
      );
    `);
  },
  // 1 -> 2: readings dropped to keep the disk bounded, remembered until announced upstream.
  (db) => {
    db.exec(`
      CREATE TABLE dropped (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp    TEXT NOT NULL,
        from_seq     INTEGER NOT NULL,
        to_seq       INTEGER NOT NULL,
        count        INTEGER NOT NULL,
        reason       TEXT NOT NULL,
        announced_at TEXT
      );
      CREATE INDEX dropped_unannounced ON dropped(id) WHERE announced_at IS NULL;
    `);
  },
  // 2 -> 3: why a row was parked (the broker refused it, or it can never fit the broker's packet size).
  (db) => {
    db.exec(`ALTER TABLE transactions ADD COLUMN park_reason TEXT;`);
  },
  // 3 -> 4: `id` no longer a PRIMARY KEY. Its unique index was a third B-tree page rewritten by
  // every commit (SD-card writes, docs/benchmarks.md); ids are UUIDv7 made unique by their
  // writer, rows are found by seq. A table too large to copy quickly keeps its index: copying needs
  // the table's size again in free space and holds the start-up back.
  (db) => {
    const rows = db.prepare('SELECT count(*) FROM transactions').pluck().get() as number;
    if (rows > REBUILD_MAX_ROWS || !roomToCopy(db)) return;
    db.exec(`
      CREATE TABLE transactions_v4 (
        id             TEXT NOT NULL,             -- UUIDv7, time-ordered
        timestamp      TEXT NOT NULL,             -- ISO 8601 UTC, milliseconds
        amount         REAL,                      -- the reading's value
        description    TEXT,
        synced         INTEGER NOT NULL DEFAULT 0,
        sync_timestamp TEXT,
        retry_count    INTEGER NOT NULL DEFAULT 0, -- failed attempts of any kind
        sensor         TEXT NOT NULL,
        unit           TEXT,
        seq            INTEGER NOT NULL,          -- per-device, strictly increasing; also the rowid
        reject_count   INTEGER NOT NULL DEFAULT 0, -- refusals by the broker; parks at sync.retry.maxAttempts
        parked_at      TEXT,                      -- set when parked: excluded from sync until requeued
        flags          INTEGER NOT NULL DEFAULT 0, -- bit 0: clock was not trustworthy when sampled
        park_reason    TEXT
      );
      INSERT INTO transactions_v4 (rowid, id, timestamp, amount, description, synced, sync_timestamp, retry_count, sensor, unit, seq, reject_count, parked_at, flags, park_reason)
        SELECT rowid, id, timestamp, amount, description, synced, sync_timestamp, retry_count, sensor, unit, seq, reject_count, parked_at, flags, park_reason FROM transactions;
      DROP TABLE transactions;
      ALTER TABLE transactions_v4 RENAME TO transactions;
      CREATE INDEX transactions_pending ON transactions(seq) WHERE synced = 0 AND parked_at IS NULL;
      CREATE INDEX transactions_parked ON transactions(seq) WHERE parked_at IS NOT NULL;
    `);
  },
];

/** Migration 3 -> 4 copies tables up to this many rows (about 15 MB, seconds on a Pi). */
export const REBUILD_MAX_ROWS = 100_000;

/**
 * Free space for a copy of the whole file and its WAL frames, and 1 MB besides: a device whose
 * disk is nearly full starts with its old table rather than not at all.
 */
function roomToCopy(db: Database.Database): boolean {
  const fileBytes = (db.pragma('page_count', { simple: true }) as number) * (db.pragma('page_size', { simple: true }) as number);
  const fs = statfsSync(dirname(db.name));
  return fs.bavail * fs.bsize >= 2 * fileBytes + 1024 * 1024;
}

export const SCHEMA_VERSION = MIGRATIONS.length;
