import type pg from 'pg';
import type { Decoded, RejectReason, Rejection } from '../decode.js';
import { planGaps, type GapPiece, type GapRow } from '../gaps.js';
import type { Tables } from './schema.js';
import { booleanArray, nullableNumberArray, plainArray, textArray } from './literal.js';

/** What the store takes: every decoded message but the ignored ones. */
export type StoreItem = Exclude<Decoded, { kind: 'ignored' }>;

export type ItemOutcome =
  | { kind: 'stored'; device: string; stored: number; duplicates: number }
  | { kind: 'applied'; device: string }
  | { kind: 'rejected'; topic: string; device: string | null; reason: RejectReason; detail: string };

/** Some readings were stored before: redo the transaction with the insert saying which are new. */
export class DuplicatesFound extends Error {
  constructor() {
    super('duplicates in the batch');
  }
}

/** Readings of some messages collide with stored ones under another id: redo the transaction without them. */
export class ConflictFound extends Error {
  constructor(readonly conflicts: Map<number, string>) {
    super(`${conflicts.size} message(s) with conflicting duplicates`);
  }
}

interface DeviceWork {
  accounted: number;
  highest: number;
  inserted: number[];
  drops: Array<[number, number]>;
  dropReasons: Set<string>;
  stored: number;
  dups: number;
  rejected: number;
  newestMs: number;
  seen: boolean;
  status?: Extract<StoreItem, { kind: 'status' }>;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * Stores a batch of messages in one transaction on `client`: the readings (each once), the gap
 * bookkeeping of their devices under the devices' row locks (taken in name order, so that
 * collectors sharing a fleet wait for each other instead of deadlocking), statuses, announced
 * drops and rejections. Commits, or throws with everything rolled back.
 */
export async function writeBatch(client: pg.ClientBase, t: Tables, items: readonly StoreItem[], reorderWindowMs: number, detail: boolean, statusEveryMs = 0): Promise<ItemOutcome[]> {
  await client.query('BEGIN');
  try {
    const out = await writeInTransaction(client, t, items, reorderWindowMs, detail, statusEveryMs);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

async function writeInTransaction(client: pg.ClientBase, t: Tables, items: readonly StoreItem[], reorderWindowMs: number, detail: boolean, statusEveryMs: number): Promise<ItemOutcome[]> {
  const names = [...new Set(items.map((i) => i.device).filter((d): d is string => d !== null))].sort();
  const locked = await client.query({
    text: `SELECT device, accounted_seq, highest_seq, extract(epoch FROM now()) * 1000 FROM ${t.devices} WHERE device = ANY($1::text[]) ORDER BY device FOR UPDATE`,
    values: [names],
    rowMode: 'array',
  });
  const work = new Map<string, DeviceWork>();
  let nowMs = Date.now();
  for (const [device, accounted, highest, now] of locked.rows as Array<[string, string, string, number]>) {
    work.set(device, { accounted: Number(accounted), highest: Number(highest), inserted: [], drops: [], dropReasons: new Set(), stored: 0, dups: 0, rejected: 0, newestMs: -Infinity, seen: false });
    nowMs = Number(now);
  }
  const outcomes: ItemOutcome[] = items.map((i) => (i.kind === 'rejected' ? { kind: 'rejected', topic: i.topic, device: i.device, reason: i.reason, detail: i.detail } : { kind: 'applied', device: i.device }));
  const rejections: Rejection[] = [];
  for (const [i, item] of items.entries()) {
    const w = item.device === null ? undefined : work.get(item.device);
    if (item.kind === 'rejected') {
      rejections.push(item);
      if (w) w.rejected++;
      continue;
    }
    // every other kind names a device whose row was created before the transaction
    if (!w) throw new Error(`no devices row for ${item.device}`);
    // a retained status is the broker's old copy, sent again on every subscribe: not a sign of life
    if (item.kind !== 'status' || !item.retained) w.seen = true;
    if (item.kind === 'status') w.status = item;
    else if (item.kind === 'dropped') {
      w.drops.push(...item.ranges);
      for (const r of item.reasons) w.dropReasons.add(r);
    } else outcomes[i] = { kind: 'stored', device: item.device, stored: 0, duplicates: 0 };
  }
  await insertReadings(client, t, items, work, outcomes, detail);
  const gapChanges = await planDeviceGaps(client, t, work, nowMs, reorderWindowMs);
  await applyChanges(client, t, work, gapChanges, rejections);
  await sampleStatuses(client, t, work, statusEveryMs);
  return outcomes;
}

/**
 * One INSERT for every reading of the batch. Without `detail` it only counts: when every reading
 * was new (the usual case) that says all; otherwise DuplicatesFound asks for the transaction again
 * with RETURNING, which says which readings were new.
 */
async function insertReadings(client: pg.ClientBase, t: Tables, items: readonly StoreItem[], work: Map<string, DeviceWork>, outcomes: ItemOutcome[], detail: boolean): Promise<void> {
  const msgs = items.filter((i): i is Extract<StoreItem, { kind: 'readings' }> => i.kind === 'readings');
  const total = msgs.reduce((n, m) => n + m.readings.seq.length, 0);
  if (total === 0) return;
  const cols = { device: new Array<string>(total), seq: new Array<number>(total), id: new Array<string>(total), ts: new Array<string>(total), sensor: new Array<string>(total), value: new Array<number | null>(total), unit: new Array<string | null>(total), description: new Array<string | null>(total), clock: new Array<boolean>(total), batch: new Array<string>(total) };
  let k = 0;
  for (const m of msgs) {
    const r = m.readings;
    for (let j = 0; j < r.seq.length; j++, k++) {
      cols.device[k] = m.device;
      cols.seq[k] = r.seq[j];
      cols.id[k] = r.id[j];
      cols.ts[k] = r.ts[j];
      cols.sensor[k] = r.sensor[j];
      cols.value[k] = r.value[j];
      cols.unit[k] = r.unit[j];
      cols.description[k] = r.description[j];
      cols.clock[k] = r.clockUnsynced[j];
      cols.batch[k] = m.batch;
    }
  }
  const ins = await client.query({
    text: `INSERT INTO ${t.readings} (device, seq, id, ts, sensor, value, unit, description, clock_unsynced, batch)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::float8[], $7::text[], $8::text[], $9::boolean[], $10::uuid[])
           ON CONFLICT (device, seq) DO NOTHING${detail ? ' RETURNING device, seq' : ''}`,
    values: [textArray(cols.device), plainArray(cols.seq), plainArray(cols.id), plainArray(cols.ts), textArray(cols.sensor), nullableNumberArray(cols.value), textArray(cols.unit), textArray(cols.description), booleanArray(cols.clock), plainArray(cols.batch)],
    rowMode: 'array',
  });
  if (!detail) {
    if (ins.rowCount !== total) throw new DuplicatesFound();
    for (const [i, item] of items.entries()) {
      if (item.kind !== 'readings') continue;
      const w = work.get(item.device)!;
      (outcomes[i] as Extract<ItemOutcome, { kind: 'stored' }>).stored = item.readings.seq.length;
      w.stored += item.readings.seq.length;
      for (const seq of item.readings.seq) w.inserted.push(seq);
      if (item.newestTsMs > w.newestMs) w.newestMs = item.newestTsMs;
    }
    return;
  }
  const fresh = new Map<string, Set<number>>();
  for (const [device, seq] of ins.rows as Array<[string, string]>) {
    let s = fresh.get(device);
    if (!s) fresh.set(device, (s = new Set()));
    s.add(Number(seq));
  }
  // readings the insert skipped: stored before (a duplicate) or under another id (a conflict)
  const skipped: Array<{ item: number; device: string; seq: number; id: string }> = [];
  for (const [i, item] of items.entries()) {
    if (item.kind !== 'readings') continue;
    const w = work.get(item.device)!;
    const s = fresh.get(item.device);
    const o = outcomes[i] as Extract<ItemOutcome, { kind: 'stored' }>;
    for (let k = 0; k < item.readings.seq.length; k++) {
      const seq = item.readings.seq[k];
      // the first message of the batch that holds a new seq is the one that stored it
      if (s?.delete(seq)) {
        o.stored++;
        w.inserted.push(seq);
      } else skipped.push({ item: i, device: item.device, seq, id: item.readings.id[k] });
    }
    w.stored += o.stored;
    if (item.newestTsMs > w.newestMs) w.newestMs = item.newestTsMs;
  }
  if (skipped.length === 0) return;
  const have = await client.query({
    text: `SELECT r.device, r.seq, r.id::text FROM ${t.readings} r JOIN unnest($1::text[], $2::bigint[]) AS k(device, seq) ON r.device = k.device AND r.seq = k.seq`,
    values: [skipped.map((x) => x.device), skipped.map((x) => x.seq)],
    rowMode: 'array',
  });
  const storedId = new Map<string, string>();
  for (const [device, seq, id] of have.rows as Array<[string, string, string]>) storedId.set(`${device}\n${seq}`, id);
  const conflicts = new Map<number, string>();
  for (const x of skipped) {
    const id = storedId.get(`${x.device}\n${x.seq}`);
    if (id !== undefined && id === x.id.toLowerCase()) {
      (outcomes[x.item] as Extract<ItemOutcome, { kind: 'stored' }>).duplicates++;
      work.get(x.device)!.dups++;
    } else if (!conflicts.has(x.item)) {
      conflicts.set(x.item, `seq ${x.seq} is stored with id ${id ?? '(none)'}, this message has id ${x.id}`);
    }
  }
  if (conflicts.size > 0) throw new ConflictFound(conflicts);
}

interface GapChanges {
  deleteIds: string[];
  insert: Array<GapPiece & { device: string }>;
  droppedNow: Map<string, number>;
}

async function planDeviceGaps(client: pg.ClientBase, t: Tables, work: Map<string, DeviceWork>, nowMs: number, reorderWindowMs: number): Promise<GapChanges> {
  // the gaps a transaction can touch lie below the device's accounted seq: fetched only then
  const want: Array<{ device: string; lo: number; hi: number }> = [];
  for (const [device, w] of work) {
    w.inserted.sort((a, b) => a - b);
    let lo = Infinity;
    if (w.inserted.length > 0 && w.inserted[0] <= w.accounted) lo = w.inserted[0];
    for (const [a] of w.drops) if (a <= w.accounted && a < lo) lo = a;
    if (lo !== Infinity) want.push({ device, lo, hi: w.accounted });
  }
  const gaps = new Map<string, GapRow[]>();
  if (want.length > 0) {
    const r = await client.query({
      text: `SELECT g.device, g.id::text, g.from_seq, g.to_seq, g.state, extract(epoch FROM g.opened_at) * 1000, g.reason
             FROM ${t.gaps} g JOIN unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(device, lo, hi)
               ON g.device = q.device AND g.to_seq >= q.lo AND g.from_seq <= q.hi
             WHERE g.state <> 'filled'`,
      values: [want.map((x) => x.device), want.map((x) => x.lo), want.map((x) => x.hi)],
      rowMode: 'array',
    });
    for (const [device, id, from, to, state, openedAt, reason] of r.rows as Array<[string, string, string, string, 'open' | 'dropped', number, string | null]>) {
      const list = gaps.get(device) ?? [];
      list.push({ id, from: Number(from), to: Number(to), state, openedAtMs: Number(openedAt), reason });
      gaps.set(device, list);
    }
  }
  const out: GapChanges = { deleteIds: [], insert: [], droppedNow: new Map() };
  for (const [device, w] of work) {
    if (w.inserted.length === 0 && w.drops.length === 0) continue;
    const plan = planGaps({
      accounted: w.accounted,
      gaps: gaps.get(device) ?? [],
      stored: w.inserted,
      dropped: w.drops,
      dropReason: w.dropReasons.size > 0 ? [...w.dropReasons].join(', ') : null,
      nowMs,
      reorderWindowMs,
    });
    w.accounted = plan.accounted;
    if (w.inserted.length > 0) w.highest = Math.max(w.highest, w.inserted[w.inserted.length - 1]);
    out.deleteIds.push(...plan.deleteIds);
    for (const p of plan.insert) out.insert.push({ ...p, device });
    out.droppedNow.set(device, plan.droppedNow);
  }
  return out;
}

/** Gaps, rejections and the devices' rows in one statement (one round trip). */
async function applyChanges(client: pg.ClientBase, t: Tables, work: Map<string, DeviceWork>, g: GapChanges, rejections: readonly Rejection[]): Promise<void> {
  const devs = [...work].filter(([, w]) => w.seen || w.rejected > 0 || w.status);
  const st = (w: DeviceWork) => w.status;
  await client.query({
    text: `WITH del AS (DELETE FROM ${t.gaps} WHERE id = ANY($1::bigint[])),
      ins AS (INSERT INTO ${t.gaps} (device, from_seq, to_seq, state, reason, opened_at, closed_at)
              SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::timestamptz[], $8::timestamptz[])),
      rej AS (INSERT INTO ${t.rejected} (topic, device, reason, detail, payload, payload_bytes)
              SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[], $14::integer[]))
      UPDATE ${t.devices} d SET
        accounted_seq = u.accounted,
        highest_seq = greatest(d.highest_seq, u.highest),
        newest_ts = greatest(d.newest_ts, u.newest),
        readings_stored = d.readings_stored + u.stored,
        duplicates_absorbed = d.duplicates_absorbed + u.dups,
        dropped_announced = d.dropped_announced + u.dropped,
        rejected_messages = d.rejected_messages + u.rejected,
        last_seen = CASE WHEN u.seen THEN now() ELSE d.last_seen END,
        last_status = CASE WHEN u.fresh THEN u.status::jsonb ELSE d.last_status END,
        online = CASE WHEN u.fresh THEN u.online ELSE d.online END,
        status_ts = CASE WHEN u.fresh THEN coalesce(u.status_ts, d.status_ts) ELSE d.status_ts END,
        pending = CASE WHEN u.fresh AND u.pending IS NOT NULL THEN u.pending ELSE d.pending END
      FROM (
        -- a status replaces the stored one unless it is older by the device's own clock (a collector
        -- catching up on a queue); a stored time in the future was a clock since corrected
        SELECT v.*, v.status IS NOT NULL AND (v.status_ts IS NULL OR x.status_ts IS NULL OR x.status_ts > now() OR v.status_ts >= x.status_ts) AS fresh
        FROM unnest($15::text[], $16::bigint[], $17::bigint[], $18::timestamptz[], $19::bigint[], $20::bigint[], $21::bigint[], $22::bigint[], $23::boolean[], $24::text[], $25::boolean[], $26::timestamptz[], $27::bigint[])
          AS v(device, accounted, highest, newest, stored, dups, dropped, rejected, seen, status, online, status_ts, pending)
        JOIN ${t.devices} x USING (device)
      ) u
      WHERE d.device = u.device`,
    values: [
      g.deleteIds,
      g.insert.map((p) => p.device),
      g.insert.map((p) => p.from),
      g.insert.map((p) => p.to),
      g.insert.map((p) => p.state),
      g.insert.map((p) => p.reason),
      g.insert.map((p) => iso(p.openedAtMs)),
      g.insert.map((p) => (p.closedAtMs === null ? null : iso(p.closedAtMs))),
      rejections.map((r) => r.topic.replace(/\0/g, '\uFFFD')),
      rejections.map((r) => r.device),
      rejections.map((r) => r.reason),
      rejections.map((r) => r.detail.replace(/\0/g, '\uFFFD')),
      rejections.map((r) => r.payload),
      rejections.map((r) => r.payloadBytes),
      devs.map(([d]) => d),
      devs.map(([, w]) => w.accounted),
      devs.map(([, w]) => w.highest),
      devs.map(([, w]) => (Number.isFinite(w.newestMs) ? iso(w.newestMs) : null)),
      devs.map(([, w]) => w.stored),
      devs.map(([, w]) => w.dups),
      devs.map(([d]) => g.droppedNow.get(d) ?? 0),
      devs.map(([, w]) => w.rejected),
      devs.map(([, w]) => w.seen),
      devs.map(([, w]) => st(w)?.json ?? null),
      devs.map(([, w]) => st(w)?.online ?? null),
      devs.map(([, w]) => st(w)?.ts ?? null),
      devs.map(([, w]) => st(w)?.pending ?? null),
    ],
  });
}

/**
 * The statuses that arrived live (not the broker's retained copy) go into the history the fleet
 * page charts: at most one per device per `everyMs` unless its online state changed (a device
 * sends one every 30 s by default: a fleet's month would be tens of millions of rows).
 */
async function sampleStatuses(client: pg.ClientBase, t: Tables, work: Map<string, DeviceWork>, everyMs: number): Promise<void> {
  const live = [...work].filter(([, w]) => w.status && !w.status.retained);
  if (live.length === 0) return;
  await client.query(
    `INSERT INTO ${t.statusSamples} (device, online, pending)
     SELECT v.device, v.online, v.pending FROM unnest($1::text[], $2::boolean[], $3::bigint[]) AS v(device, online, pending)
     WHERE NOT EXISTS (SELECT 1 FROM ${t.statusSamples} s WHERE s.device = v.device AND s.at > now() - $4::float8 * interval '1 millisecond' AND s.online IS NOT DISTINCT FROM v.online)`,
    [live.map(([d]) => d), live.map(([, w]) => w.status!.online), live.map(([, w]) => w.status!.pending), everyMs],
  );
}
