import { closeSync, openSync, readSync, statSync, type Stats } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { mkdirp } from '../util/mkdirp.js';
import { sharedFolderProblem } from '../util/shared-folder.js';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations.js';

export type SqliteDb = Database.Database;

/** 'ESNS': marks a file as ours, so a foreign SQLite database is never migrated by mistake. */
export const APPLICATION_ID = 0x45534e53;
const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

export type StoreErrorKind = 'missing' | 'foreign' | 'newer-schema' | 'corrupt' | 'cannot-open';

/** Opening the database failed in a way the caller must decide about (exit, move aside, tell the user). */
export class StoreOpenError extends Error {
  constructor(
    readonly kind: StoreErrorKind,
    readonly path: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreOpenError';
  }
}

/**
 * Page cache per connection, in KiB (negative: SQLite's unit convention): SQLite's own default of
 * 2 MB. better-sqlite3's larger default showed whole in a drain's peak memory (docs/benchmarks.md).
 */
export const PAGE_CACHE_KIB = -2000;

/**
 * The page size of new databases: a commit of a few readings rewrites a few small pages, not a few
 * 4 KB ones (SD-card writes). Affordable for the drain once ids lost their index (docs/benchmarks.md).
 */
export const NEW_PAGE_SIZE = 1024;

export interface OpenOptions {
  synchronous?: 'FULL' | 'NORMAL';
  busyTimeoutMs?: number;
  /** create the file (and its folder) when missing; read-only commands pass false */
  create?: boolean;
  readonly?: boolean;
}

/** SQLite's word that a file is damaged (or not a database at all), as opposed to busy, full or missing. */
export function isCorruption(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB';
}

/** Opening found a damaged file: the caller moves it aside or reports it. */
export function corruptError(path: string, err: unknown): StoreOpenError {
  return new StoreOpenError('corrupt', path, `database ${path} is damaged: ${(err as Error).message}`, { cause: err });
}

function cannotOpen(path: string, err: unknown): StoreOpenError {
  return new StoreOpenError('cannot-open', path, `cannot open database ${path}: ${(err as Error).message}`, { cause: err });
}

function readHeader(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(16);
    const n = readSync(fd, buf, 0, 16, 0);
    return buf.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

function refuseSharedFolder(path: string): void {
  const problem = sharedFolderProblem(path);
  if (problem) throw new StoreOpenError('cannot-open', path, `refusing database ${path}: ${problem}`);
}

function prepareFile(path: string, create: boolean): void {
  refuseSharedFolder(path);
  let st: Stats;
  try {
    st = statSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw cannotOpen(path, err);
    }
    if (!create) throw new StoreOpenError('missing', path, `no database at ${path} (has the daemon run with this config?)`);
    try {
      mkdirp(dirname(path), 0o750);
      // created by us, readable by the owner only; SQLite gives -wal and -shm the same mode
      closeSync(openSync(path, 'a', 0o600));
    } catch (e) {
      throw new StoreOpenError('cannot-open', path, `cannot create database ${path}: ${(e as Error).message}`, { cause: e });
    }
    return;
  }
  if (st.isDirectory()) {
    throw new StoreOpenError('cannot-open', path, `cannot open database ${path}: it is a folder (database.path names the database file, e.g. ${path}/edge-sensor.db)`);
  }
  if (st.size === 0) return;
  let header: Buffer;
  try {
    header = readHeader(path);
  } catch (err) {
    throw cannotOpen(path, err);
  }
  if (header.length < 16 || !header.equals(SQLITE_HEADER)) {
    throw new StoreOpenError('foreign', path, `${path} is not an SQLite database; refusing to touch it`);
  }
}

/**
 * Opens (and if needed creates and migrates) the edge-sensor database.
 * WAL lets the CLI read beside the running daemon; synchronous=FULL by default because
 * a reading reported committed must survive a power cut.
 */
export function openDatabase(path: string, opts: OpenOptions = {}): SqliteDb {
  const readonly = opts.readonly ?? false;
  prepareFile(path, opts.create ?? !readonly);
  let db: SqliteDb;
  try {
    db = new Database(path, { readonly, fileMustExist: true, timeout: opts.busyTimeoutMs ?? 5000 });
  } catch (err) {
    throw cannotOpen(path, err);
  }
  try {
    checkOwnership(db, path, readonly);
    // before anything is written (WAL mode changes the file header): a newer schema is refused untouched
    refuseNewer(db, path);
    if (!readonly) {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${opts.synchronous ?? 'FULL'}`);
    }
    db.pragma(`cache_size = ${PAGE_CACHE_KIB}`);
    migrate(db, path, readonly);
    return db;
  } catch (err) {
    db.close();
    if (err instanceof StoreOpenError) throw err;
    throw isCorruption(err) ? corruptError(path, err) : cannotOpen(path, err);
  }
}

/** Refuses a database of another program; marks a brand-new file as ours. */
function checkOwnership(db: SqliteDb, path: string, readonly: boolean): void {
  const appId = db.pragma('application_id', { simple: true }) as number;
  if (appId !== APPLICATION_ID) {
    const tables = db.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get() as { n: number };
    if (tables.n > 0 || appId !== 0) {
      throw new StoreOpenError('foreign', path, `${path} is an SQLite database of another application; refusing to touch it`);
    }
    if (readonly) throw new StoreOpenError('missing', path, `${path} holds no edge-sensor data yet`);
    // a brand-new file: incremental auto-vacuum must be chosen before the first table
    // (and before WAL mode), so that retention can give space back without a full VACUUM
    // small pages: a commit of a few readings rewrites a few small pages, not a few 4 KB ones
    // (fewer bytes per reading on an SD card: docs/benchmarks.md). Existing files keep theirs.
    // Before auto_vacuum: once that is set, the page size no longer changes.
    db.pragma(`page_size = ${NEW_PAGE_SIZE}`);
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma(`application_id = ${APPLICATION_ID}`);
  }
}

function refuseNewer(db: SqliteDb, path: string): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > SCHEMA_VERSION) {
    throw new StoreOpenError(
      'newer-schema',
      path,
      `${path} has schema version ${version}, newer than this edge-sensor understands (${SCHEMA_VERSION}); upgrade edge-sensor instead of opening it with an older one`,
    );
  }
}

function migrate(db: SqliteDb, path: string, readonly: boolean): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version < SCHEMA_VERSION) {
    if (readonly) throw new StoreOpenError('newer-schema', path, `${path} has schema version ${version}; start the daemon once to migrate it`);
    const migrate = db.transaction(() => {
      for (let v = version; v < SCHEMA_VERSION; v++) MIGRATIONS[v](db);
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
    migrate.immediate();
  }
}
