import { afterAll, describe, expect, it } from 'vitest';
import { copyFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Store } from '../src/store/store.js';
import { StoreOpenError, APPLICATION_ID } from '../src/store/database.js';
import { MIGRATIONS, REBUILD_MAX_ROWS, SCHEMA_VERSION } from '../src/store/migrations.js';
import { prepareTakePending } from '../src/store/statements.js';
import { uuidv7, uuidv7Time } from '../src/util/uuidv7.js';
import { makeTmp } from './helpers/tmp.js';
import { mountTmpfs, tmpfsUnavailable, unmount } from './faults/lib/mounts.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
let n = 0;
const dbPath = () => join(tmp.dir, `s${++n}.db`);
const r = (value: number, sensor = 's') => ({ sensor, value, unit: 'C' });

describe('store', () => {
  it('creates a fresh database: the three tables, WAL, incremental vacuum, schema version, owner-only mode', () => {
    const path = dbPath();
    const s = new Store(path);
    const tables = s.db.prepare("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name").pluck().all();
    expect(tables).toEqual(expect.arrayContaining(['config', 'sync_log', 'transactions']));
    const cols = s.db.prepare("SELECT name FROM pragma_table_info('transactions')").pluck().all();
    expect(cols).toEqual(
      expect.arrayContaining(['id', 'timestamp', 'amount', 'description', 'synced', 'sync_timestamp', 'retry_count', 'sensor', 'unit', 'seq']),
    );
    expect(s.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(s.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(s.db.pragma('auto_vacuum', { simple: true })).toBe(2); // INCREMENTAL
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(s.db.pragma('application_id', { simple: true })).toBe(APPLICATION_ID);
    s.close();
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('appends one tick in one transaction with UUIDv7 ids, millisecond UTC timestamps and increasing seq', () => {
    const s = new Store(dbPath());
    const t = Date.parse('2026-11-26T10:00:00.123Z');
    const res = s.append([r(1), r(2), r(3)], t);
    expect(res).toEqual({ firstSeq: 1, lastSeq: 3, count: 3 });
    const rows = s.takePending(10);
    expect(rows.map((x) => x.seq)).toEqual([1, 2, 3]);
    expect(rows.map((x) => x.value)).toEqual([1, 2, 3]);
    expect(rows[0].ts).toBe('2026-11-26T10:00:00.123Z');
    for (const row of rows) {
      expect(row.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(uuidv7Time(row.id)).toBe(t);
    }
    expect(new Set(rows.map((x) => x.id)).size).toBe(3);
    s.close();
  });

  it('takes the oldest pending first, skips synced rows, and continues after a seq', () => {
    const s = new Store(dbPath());
    for (let i = 0; i < 10; i++) s.append([r(i)]);
    expect(s.takePending(3).map((x) => x.seq)).toEqual([1, 2, 3]);
    expect(s.markSynced([1, 2, 3])).toBe(3);
    expect(s.takePending(3).map((x) => x.seq)).toEqual([4, 5, 6]);
    expect(s.takePending(3, 6).map((x) => x.seq)).toEqual([7, 8, 9]);
    expect(s.countPending()).toBe(7);
    const st = s.stats();
    expect(st).toMatchObject({ pending: 7, parked: 0, syncedTotal: 3, lastSeq: 10 });
    const synced = s.db.prepare('SELECT synced, sync_timestamp FROM transactions WHERE seq = 1').get() as { synced: number; sync_timestamp: string };
    expect(synced.synced).toBe(1);
    expect(Date.parse(synced.sync_timestamp)).toBeGreaterThan(0);
    // marking twice does not count twice
    expect(s.markSynced([1, 2, 3])).toBe(0);
    expect(s.stats().syncedTotal).toBe(3);
    s.close();
  });

  it('finds pending rows through the partial index, not by scanning the table', () => {
    const s = new Store(dbPath());
    // the store's own statement, as the sync loop runs it
    const sql = prepareTakePending(s.db, 500).source;
    expect(sql).toMatch(/FROM transactions WHERE .*synced = 0.*LIMIT 500$/s);
    const plan = s.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(0) as Array<{ detail: string }>;
    const details = plan.map((p) => p.detail).join(' | ');
    expect(details).toMatch(/USING INDEX transactions_pending/);
    expect(details).not.toMatch(/SCAN transactions(?! USING)/);
    expect(details).not.toMatch(/TEMP B-TREE/); // no sort: the index gives seq order
    expect(() => prepareTakePending(s.db, 1.5)).toThrow(RangeError);
    // requeue by id goes through the parked index (ids are not indexed since schema 4)
    const requeuePlan = s.db.prepare("EXPLAIN QUERY PLAN UPDATE transactions SET parked_at = NULL WHERE parked_at IS NOT NULL AND id = 'x' AND synced = 0").all() as Array<{ detail: string }>;
    expect(requeuePlan.map((p) => p.detail).join(' | ')).toMatch(/USING INDEX transactions_parked/);
    s.close();
  });

  it('keeps seq increasing across restarts and across writers', () => {
    const path = dbPath();
    const a = new Store(path);
    a.append([r(1), r(2)]);
    a.close();
    const b = new Store(path);
    expect(b.append([r(3)]).firstSeq).toBe(3);
    const c = new Store(path); // a second writer, as a CLI `record` beside the daemon
    expect(c.append([r(4)]).firstSeq).toBe(4);
    expect(b.append([r(5)]).firstSeq).toBe(5);
    c.close();
    b.close();
  });

  it('counts unknown outcomes without parking, and parks after maxAttempts rejections; nothing is deleted', () => {
    const s = new Store(dbPath());
    s.append([r(1), r(2), r(3)]);
    for (let i = 0; i < 20; i++) s.recordUnknown([1, 2, 3]);
    expect(s.stats()).toMatchObject({ pending: 3, parked: 0 });
    expect(s.recordRejected([1, 2], 3)).toBe(0);
    expect(s.recordRejected([1, 2], 3)).toBe(0);
    expect(s.recordRejected([1, 2], 3)).toBe(2);
    const rows = s.db.prepare('SELECT seq, retry_count, reject_count, parked_at FROM transactions ORDER BY seq').all() as Array<Record<string, unknown>>;
    expect(rows[0]).toMatchObject({ retry_count: 23, reject_count: 3 });
    expect(rows[0].parked_at).not.toBeNull();
    expect(rows[2]).toMatchObject({ retry_count: 20, reject_count: 0, parked_at: null });
    expect(s.stats()).toMatchObject({ pending: 1, parked: 2 });
    expect(s.takePending(10).map((x) => x.seq)).toEqual([3]);
    expect(s.db.prepare('SELECT count(*) FROM transactions').pluck().get()).toBe(3);
    // requeue one by id, then the rest
    const id1 = (s.db.prepare('SELECT id FROM transactions WHERE seq = 1').get() as { id: string }).id;
    expect(s.requeue([id1, 'no-such-id'])).toBe(1);
    expect(s.takePending(10).map((x) => x.seq)).toEqual([1, 3]);
    expect(s.requeue()).toBe(1);
    expect(s.stats()).toMatchObject({ pending: 3, parked: 0 });
    s.close();
  });

  it('migrates a database of an older schema forward, keeping its rows', () => {
    const path = dbPath();
    // a version-1 database, as the first release wrote it
    const d = new Database(path);
    d.pragma('auto_vacuum = INCREMENTAL');
    d.pragma(`application_id = ${APPLICATION_ID}`);
    d.pragma('journal_mode = WAL');
    MIGRATIONS[0](d);
    d.pragma('user_version = 1');
    d.prepare("INSERT INTO transactions (rowid, id, timestamp, amount, sensor, unit, seq) VALUES (1, 'a', '2026-01-01T00:00:00.000Z', 1.5, 's', 'C', 1)").run();
    d.close();
    const s = new Store(path);
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(s.db.prepare("SELECT name FROM sqlite_master WHERE name = 'dropped'").pluck().get()).toBe('dropped');
    expect(s.takePending(10).map((r) => r.id)).toEqual(['a']);
    expect(s.append([r(2)]).firstSeq).toBe(2);
    s.close();
  });

  /** a version-3 database (ids as the primary key), as the releases before schema 4 wrote it */
  function v3Database(rows: number): string {
    const path = dbPath();
    const d = new Database(path);
    d.pragma('auto_vacuum = INCREMENTAL');
    d.pragma(`application_id = ${APPLICATION_ID}`);
    d.pragma('journal_mode = WAL');
    d.transaction(() => {
      for (let v = 0; v < 3; v++) MIGRATIONS[v](d);
      d.pragma('user_version = 3');
      const ins = d.prepare('INSERT INTO transactions (rowid, id, timestamp, amount, sensor, unit, seq, synced, sync_timestamp, parked_at, park_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)');
      for (let seq = 1; seq <= rows; seq++) {
        const parked = seq === 2 ? '2026-01-01T00:00:02.000Z' : null;
        ins.run(seq, uuidv7(1_767_225_600_000 + seq), '2026-01-01T00:00:00.000Z', seq / 2, 's', 'C', seq, seq === 1 ? 1 : 0, seq === 1 ? '2026-01-01T00:00:01.000Z' : null, parked, parked && 'too large');
      }
    })();
    d.close();
    return path;
  }
  const idIndexes = (db: Database.Database) => db.prepare("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name LIKE 'sqlite_autoindex_transactions%'").pluck().get();

  it('migrates 3 -> 4: the table copied without the id index, every row and its state kept', () => {
    const path = v3Database(5);
    const before = new Database(path, { readonly: true });
    const rowsBefore = before.prepare('SELECT * FROM transactions ORDER BY rowid').all();
    expect(idIndexes(before)).toBe(1);
    before.close();
    const s = new Store(path);
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(idIndexes(s.db)).toBe(0);
    expect(s.db.prepare('SELECT * FROM transactions ORDER BY rowid').all()).toEqual(rowsBefore);
    expect(s.db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'transactions' ORDER BY name").pluck().all()).toEqual(['transactions_parked', 'transactions_pending']);
    expect(s.stats()).toMatchObject({ pending: 3, parked: 1 });
    expect(s.takePending(10).map((x) => x.seq)).toEqual([3, 4, 5]);
    expect(s.parkedByReason()).toEqual([{ reason: 'too large', rows: 1, firstSeq: 2, lastSeq: 2 }]);
    const parkedId = (rowsBefore[1] as { id: string }).id;
    expect(s.requeue([parkedId])).toBe(1);
    expect(s.append([r(6)]).firstSeq).toBe(6);
    expect(s.db.pragma('integrity_check', { simple: true })).toBe('ok');
    s.close();
    // a new database has the same shape
    const fresh = new Store(dbPath());
    expect(idIndexes(fresh.db)).toBe(0);
    expect(fresh.db.pragma('page_size', { simple: true })).toBe(1024);
    fresh.close();
  });

  it.skipIf(tmpfsUnavailable())('migrates 3 -> 4 without copying when the disk has no room for a copy: the id index stays, the store opens', () => {
    const dir = join(tmp.dir, 'small-fs');
    mkdirSync(dir);
    const made = v3Database(20_000);
    const size = statSync(made).size + (statSync(made + '-wal', { throwIfNoEntry: false })?.size ?? 0);
    // room for the file and a little more, not for a copy of it
    mountTmpfs(dir, Math.ceil((size + 1024 * 1024) / 4096) * 4096);
    try {
      const path = join(dir, 'full.db');
      copyFileSync(made, path);
      if (existsSync(made + '-wal')) copyFileSync(made + '-wal', path + '-wal');
      const s = new Store(path);
      expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(idIndexes(s.db)).toBe(1);
      expect(s.countPending()).toBe(19_999 - 1);
      s.close();
    } finally {
      unmount(dir);
    }
  });

  it('migrates 3 -> 4 without copying a table too large to copy quickly: the id index stays, everything works', () => {
    const path = v3Database(REBUILD_MAX_ROWS + 1);
    const s = new Store(path);
    expect(s.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    expect(idIndexes(s.db)).toBe(1);
    expect(s.countPending()).toBe(REBUILD_MAX_ROWS - 1);
    expect(s.append([r(1)]).firstSeq).toBe(REBUILD_MAX_ROWS + 2);
    s.close();
  });

  it('keeps config values and a bounded sync log', () => {
    const s = new Store(dbPath());
    expect(s.getConfig('online')).toBeUndefined();
    s.setConfig('online', '0');
    s.setConfig('online', '1');
    expect(s.getConfig('online')).toBe('1');
    for (let i = 0; i < 150; i++) s.logEvent('batch_acked', { rows: i });
    expect(s.recentLog(2).map((e) => (e.details as { rows: number }).rows)).toEqual([148, 149]);
    expect(s.pruneLog(100)).toBe(50);
    expect(s.db.prepare('SELECT count(*) FROM sync_log').pluck().get()).toBe(100);
    const last = s.recentLog(1)[0];
    s.logEvent('connected', {});
    expect(s.recentLog(10, last.id).map((e) => e.event_type)).toEqual(['connected']);
    s.close();
  });

  it('refuses a file that is not SQLite, a foreign SQLite database, and a newer schema, changing nothing', () => {
    const text = join(tmp.dir, 'notes.db');
    writeFileSync(text, 'hello, not a database\n');
    expect(() => new Store(text)).toThrow(expect.objectContaining({ kind: 'foreign' }));
    const foreign = join(tmp.dir, 'foreign.db');
    const f = new Database(foreign);
    f.exec('CREATE TABLE t (x)');
    f.close();
    const before = statSync(foreign).mtimeMs;
    expect(() => new Store(foreign)).toThrow(/another application/);
    expect(statSync(foreign).mtimeMs).toBe(before);
    const newer = dbPath();
    new Store(newer).close();
    const d = new Database(newer);
    d.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
    d.pragma('journal_mode = DELETE'); // a future version may not use WAL: not even that is changed
    d.close();
    const bytes = readFileSync(newer);
    expect(() => new Store(newer)).toThrow(expect.objectContaining({ kind: 'newer-schema' }));
    expect(readFileSync(newer).equals(bytes)).toBe(true);
    expect(existsSync(`${newer}-wal`)).toBe(false);
  });

  it('reports a missing database when asked not to create one, and an unusable path clearly', () => {
    expect(() => new Store(join(tmp.dir, 'nope.db'), { create: false })).toThrow(expect.objectContaining({ kind: 'missing' }));
    const blocker = join(tmp.dir, 'file-not-dir');
    writeFileSync(blocker, 'x');
    let err: unknown;
    try {
      new Store(join(blocker, 'x.db'));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StoreOpenError);
    expect((err as StoreOpenError).kind).toBe('cannot-open');
    expect((err as Error).message).toMatch(/cannot (open|create) database .*not a directory/);
  });

  it('opens read-only beside a writer', () => {
    const path = dbPath();
    const w = new Store(path);
    w.append([r(1)]);
    const ro = new Store(path, { readonly: true });
    expect(ro.stats().pending).toBe(1);
    w.append([r(2)]);
    expect(ro.stats().pending).toBe(2);
    expect(() => ro.append([r(3)])).toThrow();
    ro.close();
    w.close();
  });
});

describe('uuidv7', () => {
  it('is strictly increasing within a process, even within one millisecond', () => {
    const ids = Array.from({ length: 5000 }, () => uuidv7(1_800_000_000_000));
    const sorted = [...ids].sort();
    expect(sorted).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('has the RFC 9562 layout: version 7, variant 10, the millisecond in the first 48 bits', () => {
    // later than any millisecond used before in this file (ids never go back in time)
    for (const ms of [1_900_000_000_000, 1_900_000_000_001, 1_900_000_065_536]) {
      const id = uuidv7(ms);
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(uuidv7Time(id)).toBe(ms);
    }
    // the variant digit and the rest are random: many ids use all four variant digits
    const variants = new Set(Array.from({ length: 400 }, () => uuidv7(1_900_000_065_536)[19]));
    expect([...variants].sort()).toEqual(['8', '9', 'a', 'b']);
  });
});
