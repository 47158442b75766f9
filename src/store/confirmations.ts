import type { Store } from './store.js';

/** The config key of the collector's last word on what it stored (issue 16). */
export const STORED_THROUGH_KEY = 'stored_through';

export interface ResendResult {
  /** synced rows of the range put back to pending */
  requeued: number;
  /** sub-ranges no row of which is on the device any more (recorded to be announced as dropped) */
  absent: Array<[number, number]>;
  /** the range was handled up to this seq (below `to` when `limit` rows were requeued first) */
  doneThrough: number;
}

/**
 * The end-to-end bookkeeping in the device's database (issue 16): what the collector confirmed,
 * readings synced but not yet confirmed, and rows asked for again. Its SQL lives here, beside
 * the store's; the sync side (src/sync/end-to-end.ts) sees only these methods.
 */
export class Confirmations {
  private readonly q;

  constructor(private readonly store: Store) {
    const db = store.db;
    this.q = {
      // from the newest row backwards: stops at the first synced one (usually the newest few)
      highestSynced: db.prepare('SELECT rowid FROM transactions WHERE synced = 1 ORDER BY rowid DESC LIMIT 1').pluck(),
      unconfirmed: db.prepare('SELECT count(*) FROM transactions WHERE rowid > ? AND synced = 1').pluck(),
      syncedIn: db.prepare('SELECT rowid FROM transactions WHERE rowid BETWEEN ? AND ? AND synced = 1 ORDER BY rowid LIMIT ?').pluck(),
      requeue: db.prepare('UPDATE transactions SET synced = 0, sync_timestamp = NULL WHERE rowid IN (SELECT value FROM json_each(?)) AND synced = 1'),
      count: db.prepare('SELECT count(*) FROM transactions WHERE rowid BETWEEN ? AND ?').pluck(),
      // runs of missing rowids between the rows of a range (the first and last are added in code)
      holes: db.prepare(
        `SELECT prev + 1 AS a, r - 1 AS b FROM (
           SELECT rowid AS r, lag(rowid, 1, ? - 1) OVER (ORDER BY rowid) AS prev FROM transactions WHERE rowid BETWEEN ? AND ?)
         WHERE r > prev + 1 LIMIT ?`,
      ),
      lastIn: db.prepare('SELECT max(rowid) FROM transactions WHERE rowid BETWEEN ? AND ?').pluck(),
      insertDrop: db.prepare('INSERT INTO dropped (timestamp, from_seq, to_seq, count, reason) VALUES (?, ?, ?, ?, ?)'),
    };
  }

  /** Every reading up to this seq is stored (or accounted for as dropped) by the collector; 0 when it never said. */
  storedThrough(): number {
    return Number(this.store.getConfig(STORED_THROUGH_KEY) ?? 0);
  }

  setStoredThrough(seq: number, atMs: number = Date.now()): void {
    this.store.setConfig(STORED_THROUGH_KEY, String(seq), atMs);
  }

  /** The highest seq given to a reading (a refused one, or one of a replaced database, included). */
  lastSeq(): number {
    return this.store.lastSeq();
  }

  /** The highest seq acknowledged by the broker (0: none). */
  highestSynced(): number {
    return (this.q.highestSynced.get() as number | undefined) ?? 0;
  }

  /** Readings synced (acknowledged by the broker) above `through`: not yet confirmed stored. */
  unconfirmed(through: number): number {
    return this.q.unconfirmed.get(through) as number;
  }

  /**
   * The collector asks for [from, to] again, in one transaction: up to `limit` synced rows of it
   * go back to pending (oldest first; rows still pending are on their way already), the seqs no
   * row of which is left are recorded as a drop to be announced (not counted as a new loss: they
   * were counted, or confirmed stored, when they went), and a `resend_requested` event is logged.
   */
  resend(from: number, to: number, limit: number, reason: string, atMs: number = Date.now()): ResendResult {
    const at = new Date(atMs).toISOString();
    return this.store.db
      .transaction((): ResendResult => {
        const q = this.q;
        const seqs = limit > 0 ? (q.syncedIn.all(from, to, limit) as number[]) : [];
        // with the limit reached, the rest of the range waits: absent seqs only up to there
        const doneThrough = limit > 0 && seqs.length === limit ? seqs[seqs.length - 1] : limit > 0 ? to : from - 1;
        let requeued = 0;
        if (seqs.length > 0) {
          requeued = q.requeue.run(JSON.stringify(seqs)).changes;
          this.store.addConfigInt('synced_total', -requeued, atMs);
        }
        const absent = doneThrough >= from ? this.absentIn(from, doneThrough) : [];
        for (const [a, b] of absent) q.insertDrop.run(at, a, b, b - a + 1, reason);
        if (requeued > 0 || absent.length > 0) {
          this.store.logEvent('resend_requested', { from, to: doneThrough, requeued, absent: absent.slice(0, 20), absentRanges: absent.length }, atMs);
        }
        return { requeued, absent, doneThrough };
      })
      .immediate();
  }

  /** The runs of seqs in [from, to] without a row (at most 1,000 runs). */
  private absentIn(from: number, to: number): Array<[number, number]> {
    const q = this.q;
    if ((q.count.get(from, to) as number) === to - from + 1) return [];
    const out = (q.holes.all(from, from, to, 1000) as Array<{ a: number; b: number }>).map((h): [number, number] => [h.a, h.b]);
    const last = q.lastIn.get(from, to) as number | null;
    if (last === null) return [[from, to]];
    if (last < to && out.length < 1000) out.push([last + 1, to]);
    return out;
  }
}
