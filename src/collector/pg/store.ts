import './runtime.js';
import pg from 'pg';
import type { Logger } from '../../util/logger.js';
import type { Rejection } from '../decode.js';
import { classifyPgError, isConfigFailure, pgErrorText, StoreConfigError, StoreUnavailableError } from './errors.js';
import { readFleet, readGaps, readStoredState, type FleetSnapshot, type GapListing, type StoredState } from './fleet.js';
import { openSchema, tableNames, type Tables } from './schema.js';
import { pruneStatusSamples, readBacklog, readGapBands, readSensors, readSeries, type Bucket, type GapBand, type SensorInfo, type SeriesQuery } from './series.js';
import { ConflictFound, DuplicatesFound, writeBatch, type ItemOutcome, type StoreItem } from './write.js';

export type { ItemOutcome, StoreItem };

export interface PgStoreOptions {
  /** connection string; what it leaves out comes from PG* environment variables */
  url?: string;
  password?: string;
  schema: string;
  connectTimeoutMs: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  reorderWindowMs: number;
  applicationName?: string;
  /** connections at most (default 3: two transactions of the writer, one for new devices' rows or a check) */
  poolSize?: number;
  /** a live status is kept in status_samples at most this often per device (unless its online state changed); 0: every one */
  statusEveryMs?: number;
  /** no JIT compilation: for short reads whose cost estimates cross jit_above_cost (the fleet page's) */
  noJit?: boolean;
}

/** A serialization failure or deadlock is tried again this often before the database counts as unavailable. */
const RETRIES = 3;

/**
 * The collector's PostgreSQL side: it owns every SQL statement (here and in the files beside it),
 * each one parameterised and bounded by statement, lock and connection timeouts.
 */
export class PgStore {
  private pool?: pg.Pool;
  readonly tables: Tables;
  /** devices whose row exists: created outside the write transaction, before it locks rows */
  private readonly known = new Set<string>();

  constructor(
    private readonly opts: PgStoreOptions,
    private readonly log: Logger,
  ) {
    this.tables = tableNames(opts.schema);
  }

  /**
   * Connects, then checks the tables ('read') or creates and migrates them ('migrate'). Throws
   * SchemaError (tables unusable), StoreConfigError (password, database name) or
   * StoreUnavailableError (no connection).
   */
  async open(mode: 'migrate' | 'read'): Promise<{ version: number; migratedFrom: number }> {
    const o = this.opts;
    this.pool = new pg.Pool({
      connectionString: o.url,
      password: o.password,
      max: o.poolSize ?? 3,
      connectionTimeoutMillis: o.connectTimeoutMs,
      statement_timeout: o.statementTimeoutMs,
      // the client's own bound covers a server that stopped answering (the server's cannot)
      query_timeout: o.statementTimeoutMs + 5000,
      lock_timeout: o.lockTimeoutMs,
      idle_in_transaction_session_timeout: o.statementTimeoutMs * 2,
      idleTimeoutMillis: 60_000,
      keepAlive: true,
      application_name: o.applicationName ?? 'edge-sensor-collector',
      // compiling took longer than running a series query (docs/benchmarks.md, fleet page)
      ...(o.noJit ? { options: '-c jit=off' } : {}),
    });
    // an idle connection that breaks (server restart) is reported here; unhandled it would end the process
    this.pool.on('error', (err) => this.log.debug({ err: pgErrorText(err) }, 'idle database connection closed'));
    try {
      return await this.withClient((c) => openSchema(c, o.schema, mode));
    } catch (err) {
      if (isConfigFailure(err) || isConfigFailure((err as { cause?: unknown }).cause)) throw new StoreConfigError(`PostgreSQL refused: ${pgErrorText((err as { cause?: unknown }).cause ?? err)}`, { cause: err });
      throw err;
    }
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end().catch(() => {});
  }

  /** Resolves when the database answers a trivial query. Throws StoreUnavailableError. */
  async ping(): Promise<void> {
    await this.withClient((c) => c.query('SELECT 1'));
  }

  /**
   * Stores a batch of decoded messages; returns one outcome per item, in order. Conflicting
   * duplicates and input PostgreSQL refuses are turned into rejections (and stored as such);
   * StoreUnavailableError means nothing can be said to be stored.
   */
  async write(items: readonly StoreItem[]): Promise<ItemOutcome[]> {
    await this.ensureDevices(items);
    let batch = [...items];
    // duplicates are rare (a redelivery, a resend): the insert says which readings are new only then
    let detail = false;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.withClient((c) => writeBatch(c, this.tables, batch, this.opts.reorderWindowMs, detail, this.opts.statusEveryMs ?? 0));
      } catch (err) {
        if (err instanceof DuplicatesFound) {
          detail = true;
          continue;
        }
        if (err instanceof ConflictFound) {
          batch = batch.map((item, i) => (err.conflicts.has(i) ? asRejection(item, 'conflicting-duplicate', err.conflicts.get(i)!) : item));
          continue;
        }
        const kind = classifyPgError(err);
        if (kind === 'retry' && attempt <= RETRIES) {
          this.log.debug({ err: pgErrorText(err), attempt }, 'transaction to be tried again');
          await new Promise((r) => setTimeout(r, 20 * attempt));
          continue;
        }
        if (kind === 'data') {
          if (batch.length === 1) {
            batch = [asRejection(batch[0], 'database-refused', pgErrorText(err))];
            continue;
          }
          // one message in the batch holds something PostgreSQL refuses: find it, store the rest
          this.log.warn({ err: pgErrorText(err), messages: batch.length }, 'the database refused a batch; storing its messages one by one');
          const out: ItemOutcome[] = [];
          for (const item of batch) out.push(...(await this.write([item])));
          return out;
        }
        throw err instanceof StoreUnavailableError ? err : new StoreUnavailableError(pgErrorText(err), sqlState(err), { cause: err });
      }
    }
  }

  /** Every device with its counters and open gaps (the fleet report). */
  fleet(): Promise<FleetSnapshot> {
    return this.withClient((c) => readFleet(c, this.tables));
  }

  gaps(device: string, limit = 10_000): Promise<GapListing> {
    return this.withClient((c) => readGaps(c, this.tables, device, limit));
  }

  sensors(device: string): Promise<SensorInfo[]> {
    return this.withClient((c) => readSensors(c, this.tables, device));
  }

  series(q: SeriesQuery): Promise<Bucket[]> {
    return this.withClient((c) => readSeries(c, this.tables, q));
  }

  gapBands(device: string, fromMs: number, toMs: number): Promise<GapBand[]> {
    return this.withClient((c) => readGapBands(c, this.tables, device, fromMs, toMs));
  }

  backlog(q: Omit<SeriesQuery, 'sensor'>): ReturnType<typeof readBacklog> {
    return this.withClient((c) => readBacklog(c, this.tables, q));
  }

  pruneStatusHistory(keepMs: number): Promise<number> {
    return this.withClient((c) => pruneStatusSamples(c, this.tables, keepMs));
  }

  /** Per device: stored through which seq, and which ranges (at most `limit`) are missing past the reorder window (for a `stored` message). */
  storedState(devices: readonly string[], limit: number): Promise<StoredState[]> {
    return this.withClient((c) => readStoredState(c, this.tables, devices, this.opts.reorderWindowMs, limit));
  }

  /** The devices' rows exist before any transaction locks them: creating one there could deadlock two collectors. */
  private async ensureDevices(items: readonly StoreItem[]): Promise<void> {
    const missing = [...new Set(items.filter((i) => i.kind !== 'rejected' && !this.known.has(i.device)).map((i) => i.device!))];
    if (missing.length === 0) return;
    await this.withClient((c) => c.query(`INSERT INTO ${this.tables.devices} (device) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING`, [missing.sort()]));
    for (const d of missing) this.known.add(d);
  }

  private async withClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    if (!this.pool) throw new StoreUnavailableError('the store is closed', undefined);
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw new StoreUnavailableError(`cannot connect to PostgreSQL: ${pgErrorText(err)}`, sqlState(err), { cause: err });
    }
    let broken: Error | undefined;
    // a checked-out connection that breaks emits 'error': without a listener that ends the process
    const onError = (err: Error) => (broken ??= err);
    client.on('error', onError);
    try {
      return await fn(client);
    } catch (err) {
      if (!(err instanceof ConflictFound) && !(err instanceof DuplicatesFound) && classifyPgError(err) === 'unavailable') broken ??= err as Error;
      throw err;
    } finally {
      client.off('error', onError);
      // a connection in doubt (timeout, lost) is closed, not handed out again
      client.release(broken);
    }
  }
}

function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

function asRejection(item: StoreItem, reason: Rejection['reason'], detail: string): Rejection {
  if (item.kind === 'rejected') return item;
  return { kind: 'rejected', topic: item.topic, device: item.device, reason, detail, payload: item.payload, payloadBytes: item.payloadBytes };
}
