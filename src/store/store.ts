import { statSync } from 'node:fs';
import type Database from 'better-sqlite3';
import { uuidv7 } from '../util/uuidv7.js';
import { corruptError, isCorruption, openDatabase, type OpenOptions, type SqliteDb } from './database.js';
import type { NewReading, Tick } from '../sensors/reading.js';
import { prepareStatements, prepareTakePending } from './statements.js';

/** A stored reading that has not been acknowledged yet, as the sync loop sees it. */
export interface PendingRow {
  id: string;
  seq: number;
  ts: string;
  sensor: string;
  value: number | null;
  unit: string | null;
  description: string | null;
  flags: number;
}

export interface AppendResult {
  firstSeq: number;
  lastSeq: number;
  count: number;
}

/**
 * Acknowledged rows written down: marked synced, counted, summed up in sync_log. Rides on the next
 * append's transaction (src/sync/ack-book.ts) or, when none comes in time, goes in one of its own.
 */
export interface AckWrite {
  /** rows the broker acknowledged (PUBACK): marked synced */
  seqs: readonly number[];
  /** added to synced_total: rows acknowledged since the counter was last written */
  counted: number;
  /** a `batches_acked` sync_log event summing up the batches since the last one */
  summary?: Record<string, unknown>;
}

export interface StoreStats {
  pending: number;
  parked: number;
  syncedTotal: number;
  oldestPendingTs: string | null;
  lastSeq: number;
  fileBytes: number;
}

export interface SyncLogEntry {
  id: number;
  timestamp: string;
  event_type: string;
  details: unknown;
}

/**
 * The durable buffer. The sync loop sees only this interface: append, take the oldest pending,
 * settle what was taken (synced / failed attempt), stats. It knows nothing of MQTT.
 */
export class Store {
  readonly db: SqliteDb;
  private readonly stmts: ReturnType<typeof prepareStatements>;
  private readonly takeByLimit = new Map<number, Database.Statement>();
  private readonly appendTx: Database.Transaction<(ticks: readonly Tick[], acks: AckWrite | undefined, at: string) => AppendResult>;

  /** seq never goes below this: set when a damaged database was replaced, so seq stays monotonic */
  private seqFloor: number;

  constructor(
    readonly path: string,
    opts: OpenOptions = {},
  ) {
    this.db = openDatabase(path, opts);
    try {
      this.stmts = prepareStatements(this.db);
      this.seqFloor = Number(this.getConfig('seq_floor') ?? 0);
    } catch (err) {
      this.db.close();
      throw isCorruption(err) ? corruptError(path, err) : err;
    }
    this.appendTx = this.db.transaction((ticks: readonly Tick[], acks: AckWrite | undefined, at: string) => {
      const s = this.stmts;
      // seq = max(rowid) + 1 inside the write transaction: the daemon and a CLI `record`
      // can both write without a shared counter. Retention never deletes the newest row,
      // so seq never goes backwards. rowid = seq keeps the table ordered by seq.
      const first = this.nextSeq();
      let seq = first;
      for (const t of ticks) {
        const ts = new Date(t.tsMs).toISOString();
        for (const r of t.readings) {
          s.insert.run(seq, uuidv7(t.tsMs), ts, r.value, r.description ?? null, r.sensor, r.unit, seq, t.flags);
          seq++;
        }
      }
      if (acks) this.applyAcks(acks, at);
      return { firstSeq: first, lastSeq: seq - 1, count: seq - first };
    });
  }

  /**
   * The highest seq given to a reading: the newest row's, or the floor (seqs given to readings that
   * were refused, or reached by a damaged database), read from the database each time because
   * another writer (a CLI `record`) may have moved it. Inside a write transaction, plus one is the
   * next reading's seq.
   */
  lastSeq(): number {
    const r = this.stmts.seqAndFloor.get() as { m: number | null; floor: string | null };
    this.seqFloor = Math.max(this.seqFloor, Number(r.floor ?? 0));
    return Math.max(r.m ?? 0, this.seqFloor);
  }

  private nextSeq(): number {
    return this.lastSeq() + 1;
  }

  /** Stores the readings of one sampling tick in one transaction. They are safe when this returns. */
  append(readings: readonly NewReading[], tsMs: number = Date.now(), flags = 0): AppendResult {
    return this.appendTicks([{ tsMs, flags, readings }]);
  }

  /**
   * Stores several ticks (sensors that fired together) in one transaction: one fsync for all. `acks`
   * (rows the broker acknowledged) are written in the same transaction: no fsync of their own.
   */
  appendTicks(ticks: readonly Tick[], acks?: AckWrite, atMs: number = Date.now()): AppendResult {
    return this.appendTx.immediate(ticks, acks, new Date(atMs).toISOString());
  }

  /** The oldest pending rows with seq > afterSeq, oldest first (through the partial index). */
  takePending(limit: number, afterSeq = 0): PendingRow[] {
    let st = this.takeByLimit.get(limit);
    if (!st) {
      // a few distinct limits in practice (the batch size, the split sizes): bounded all the same
      if (this.takeByLimit.size >= 16) this.takeByLimit.clear();
      st = prepareTakePending(this.db, limit);
      this.takeByLimit.set(limit, st);
    }
    return st.all(afterSeq) as PendingRow[];
  }

  /** Acknowledged by the broker: synced in one transaction, with the running total. */
  markSynced(seqs: readonly number[], atMs: number = Date.now()): number {
    const at = new Date(atMs).toISOString();
    return this.db
      .transaction(() => {
        const n = this.applyAcks({ seqs, counted: 0 }, at);
        if (n > 0) this.stmts.addConfigInt.run('synced_total', n, at);
        return n;
      })
      .immediate();
  }

  /** Acknowledged rows written down in a transaction of their own (no append came to carry them). */
  settleAcked(acks: AckWrite, atMs: number = Date.now()): number {
    const at = new Date(atMs).toISOString();
    return this.db.transaction(() => this.applyAcks(acks, at)).immediate();
  }

  /** Inside a write transaction: rows synced, the running total, the summary event. Returns the rows marked. */
  private applyAcks(acks: AckWrite, at: string): number {
    // one statement for all the seqs, as a JSON array, not one call per row (docs/benchmarks.md, "Drain")
    const n = acks.seqs.length > 0 ? this.stmts.markSynced.run(at, JSON.stringify(acks.seqs)).changes : 0;
    if (acks.counted > 0) this.stmts.addConfigInt.run('synced_total', acks.counted, at);
    if (acks.summary) this.stmts.logEvent.run(at, 'batches_acked', JSON.stringify(acks.summary));
    return n;
  }

  /** The outcome is unknown (timeout, connection lost): rows stay pending, the attempt is counted. */
  recordUnknown(seqs: readonly number[]): void {
    const tx = this.db.transaction(() => {
      for (const seq of seqs) this.stmts.attemptUnknown.run(seq);
    });
    tx.immediate();
  }

  /** The broker refused the rows: counted; parked (with the reason) once refused maxAttempts times. Returns how many were parked. */
  recordRejected(seqs: readonly number[], maxAttempts: number, atMs: number = Date.now(), reason = 'refused by the broker'): number {
    const at = new Date(atMs).toISOString();
    const tx = this.db.transaction(() => {
      let parked = 0;
      for (const seq of seqs) {
        const r = this.stmts.attemptRejected.get(maxAttempts, at, maxAttempts, reason, seq) as { parked: number } | undefined;
        if (r?.parked) parked++;
      }
      return parked;
    });
    return tx.immediate();
  }

  /** Parks pending rows at once (they can never be delivered as they are), with the reason. Returns how many. */
  park(seqs: readonly number[], reason: string, atMs: number = Date.now()): number {
    const at = new Date(atMs).toISOString();
    return this.db
      .transaction(() => {
        let n = 0;
        for (const seq of seqs) n += this.stmts.park.run(at, reason, seq).changes;
        return n;
      })
      .immediate();
  }

  /** Parked rows grouped by why they were parked (status shows it). */
  parkedByReason(): Array<{ reason: string; rows: number; firstSeq: number; lastSeq: number }> {
    return this.stmts.parkedByReason.all() as Array<{ reason: string; rows: number; firstSeq: number; lastSeq: number }>;
  }

  /** The oldest parked rows, with why (`requeue --list`). */
  parkedRows(limit = 100): Array<{ id: string; seq: number; ts: string; sensor: string; descriptionChars: number | null; parkedAt: string; reason: string }> {
    return this.stmts.parkedRows.all(limit) as ReturnType<Store['parkedRows']>;
  }

  /** Parked rows back to pending. With no ids, all of them. Returns the number requeued. */
  requeue(ids?: readonly string[]): number {
    const tx = this.db.transaction(() => {
      if (!ids) return this.stmts.requeueAll.run().changes;
      let n = 0;
      for (const id of ids) n += this.stmts.requeueId.run(id).changes;
      return n;
    });
    return tx.immediate();
  }

  countPending(): number {
    return (this.stmts.countPending.get() as { n: number }).n;
  }

  stats(): StoreStats {
    const oldest = this.stmts.oldestPending.get() as { timestamp: string } | undefined;
    return {
      pending: this.countPending(),
      parked: (this.stmts.countParked.get() as { n: number }).n,
      syncedTotal: Number(this.getConfig('synced_total') ?? 0),
      oldestPendingTs: oldest?.timestamp ?? null,
      lastSeq: this.lastSeq(),
      fileBytes: this.fileBytes(),
    };
  }

  /** Bytes on disk: the database plus its write-ahead log. */
  fileBytes(): number {
    const f = this.fileSizes();
    return f.db + f.wal;
  }

  /** The database file and its write-ahead log, each (0 for a file that is not there). */
  fileSizes(): { db: number; wal: number } {
    const size = (p: string) => {
      try {
        return statSync(p).size;
      } catch {
        return 0;
      }
    };
    return { db: size(this.path), wal: size(this.path + '-wal') };
  }

  getConfig(key: string): string | undefined {
    const r = this.stmts.getConfig.get(key) as { value: string | null } | undefined;
    return r?.value ?? undefined;
  }

  setConfig(key: string, value: string, atMs: number = Date.now()): void {
    this.stmts.setConfig.run(key, value, new Date(atMs).toISOString());
  }

  addConfigInt(key: string, delta: number, atMs: number = Date.now()): void {
    this.stmts.addConfigInt.run(key, delta, new Date(atMs).toISOString());
  }

  logEvent(eventType: string, details: Record<string, unknown> = {}, atMs: number = Date.now()): void {
    this.stmts.logEvent.run(new Date(atMs).toISOString(), eventType, JSON.stringify(details));
  }

  /** Newest sync_log events after id `afterId`, returned oldest first. */
  recentLog(limit: number, afterId = 0): SyncLogEntry[] {
    const rows = this.stmts.recentLog.all(afterId, limit) as Array<{ id: number; timestamp: string; event_type: string; details: string | null }>;
    return rows.reverse().map((r) => ({ ...r, details: r.details ? safeJson(r.details) : null }));
  }

  /** Pending rows that have failed at least once, and the most attempts any of them has had. */
  retryStats(): { rows: number; maxRetry: number } {
    return this.stmts.retryStats.get() as { rows: number; maxRetry: number };
  }

  /** The newest sync_log event of one of these types. */
  lastEvent(types: readonly string[]): SyncLogEntry | undefined {
    const r = this.stmts.lastEventOf.get(JSON.stringify(types)) as { id: number; timestamp: string; event_type: string; details: string | null } | undefined;
    return r ? { ...r, details: r.details ? safeJson(r.details) : null } : undefined;
  }

  /**
   * Drops up to `limit` of the oldest unsynced readings (pending or parked) to keep the disk
   * bounded, skipping the seq range [protectFrom, protectTo] (rows in flight). The loss is
   * counted persistently and its seq ranges remembered until announced upstream.
   * Returns what was dropped. Never deletes the newest row (seq continuity).
   */
  dropOldestUnsynced(limit: number, reason: string, protect?: [number, number], atMs: number = Date.now()): { count: number; ranges: Array<[number, number]> } {
    const at = new Date(atMs).toISOString();
    const tx = this.db.transaction(() => {
      const [pa, pb] = protect ?? [1, 0];
      const newest = (this.stmts.maxSeq.get() as { m: number | null }).m ?? 0;
      const rows = (this.stmts.oldestUnsynced.all(pa, pb, limit) as Array<{ r: number }>).map((x) => x.r).filter((r) => r !== newest);
      const ranges: Array<[number, number]> = [];
      for (const r of rows) {
        this.stmts.deleteRow.run(r);
        const last = ranges[ranges.length - 1];
        if (last && last[1] === r - 1) last[1] = r;
        else ranges.push([r, r]);
      }
      for (const [a, b] of ranges) this.stmts.insertDrop.run(at, a, b, b - a + 1, reason);
      if (rows.length > 0) {
        this.stmts.addConfigInt.run('dropped_total', rows.length, at);
        this.stmts.logEvent.run(at, 'readings_dropped', JSON.stringify({ count: rows.length, reason, ranges: ranges.slice(0, 20), rangeCount: ranges.length }));
      }
      return { count: rows.length, ranges };
    });
    return tx.immediate();
  }

  /**
   * Readings that were taken but not stored (storage full, `stop-sampling` policy): they get seqs
   * of their own, so a consumer sees a gap, and the range is kept in `dropped` to be announced
   * upstream like a drop. A range that continues the last unannounced one of the same reason is
   * extended instead of adding a row per tick. One small transaction.
   */
  recordRefused(count: number, reason: string, atMs: number = Date.now()): [number, number] {
    const at = new Date(atMs).toISOString();
    return this.db
      .transaction((): [number, number] => {
        const first = this.nextSeq();
        const last = first + count - 1;
        this.stmts.setConfig.run('seq_floor', String(last), at);
        this.seqFloor = last;
        const prev = this.stmts.lastUnannounced.get() as { id: number; toSeq: number; reason: string } | undefined;
        if (prev && prev.toSeq === first - 1 && prev.reason === reason) {
          this.stmts.extendDrop.run(last, count, prev.id);
        } else {
          this.stmts.insertDrop.run(at, first, last, count, reason);
          this.stmts.logEvent.run(at, 'readings_refused', JSON.stringify({ reason, fromSeq: first }));
        }
        this.stmts.addConfigInt.run('dropped_total', count, at);
        return [first, last];
      })
      .immediate();
  }

  /** Drop records not yet announced to the broker, oldest first. */
  unannouncedDrops(limit = 1000): Array<{ id: number; timestamp: string; fromSeq: number; toSeq: number; count: number; reason: string }> {
    return this.stmts.unannounced.all(limit) as Array<{ id: number; timestamp: string; fromSeq: number; toSeq: number; count: number; reason: string }>;
  }

  markDropsAnnounced(ids: readonly number[], atMs: number = Date.now()): void {
    const at = new Date(atMs).toISOString();
    this.db.transaction(() => {
      for (const id of ids) this.stmts.announce.run(at, id);
    }).immediate();
  }

  /** After a damaged database was replaced: seq continues above what the old one reached. */
  setSeqFloor(seq: number): void {
    this.setConfig('seq_floor', String(seq));
    this.seqFloor = seq;
  }

  /** One stored reading as the table holds it (the CLI's `record --json` prints it). */
  reading(seq: number): { id: string; seq: number; timestamp: string; sensor: string; amount: number | null; unit: string | null; description: string | null } | undefined {
    return this.stmts.reading.get(seq) as ReturnType<Store['reading']>;
  }

  /** The oldest seq still in the table (0 when empty). */
  minSeq(): number {
    return (this.stmts.minSeq.get() as number | null) ?? 0;
  }

  /** Keeps the newest maxRows sync_log events. */
  pruneLog(maxRows: number): number {
    return this.stmts.pruneLog.run(maxRows).changes;
  }

  /**
   * Readings taken but never stored (the disk was full), counted with their event in one
   * transaction: a count written without its event (or the reverse) would be counted again.
   */
  recordLost(count: number, error: string | null, atMs: number = Date.now()): void {
    const at = new Date(atMs).toISOString();
    this.db
      .transaction(() => {
        this.stmts.addConfigInt.run('lost_total', count, at);
        this.stmts.logEvent.run(at, 'readings_lost', JSON.stringify({ count, error }));
      })
      .immediate();
  }

  /** Readings lost for good so far: never stored (`lost`) and dropped to keep the disk bounded (`dropped`). */
  lossTotals(): { lost: number; dropped: number } {
    return { lost: Number(this.getConfig('lost_total') ?? 0), dropped: Number(this.getConfig('dropped_total') ?? 0) };
  }

  get isOpen(): boolean {
    return this.db.open;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return s;
  }
}
