import type pg from 'pg';
import type { Tables } from './schema.js';

/** What the fleet page reads of one device besides its fleet row: its sensors and, per window, downsampled values. */
export interface SensorInfo {
  sensor: string;
  unit: string | null;
  description: string | null;
  newestTs: Date;
}

export interface SeriesQuery {
  device: string;
  sensor: string;
  fromMs: number;
  toMs: number;
  bucketMs: number;
}

/** One bucket: its start (ms since the epoch), min, mean and max of the values in it, how many readings. */
export type Bucket = [t: number, min: number | null, avg: number | null, max: number | null, n: number];

export interface GapBand {
  state: 'open' | 'dropped';
  fromSeq: number;
  toSeq: number;
  /** the readings on either side of the hole (null when there is none, e.g. the device's first seqs) */
  afterMs: number | null;
  beforeMs: number | null;
  reason: string | null;
}

/** At most this many sensors per device are listed (a device sending random names must not fill the page). */
export const MAX_SENSORS = 64;
/** At most this many unfilled gap ranges of one device are drawn. */
const MAX_BANDS = 1000;

/** The device's sensors with the unit and description of their newest reading (a skip scan over the sensor index). */
export async function readSensors(c: pg.ClientBase, t: Tables, device: string): Promise<SensorInfo[]> {
  const r = await c.query<{ sensor: string; unit: string | null; description: string | null; ts: Date }>(
    `WITH RECURSIVE s AS (
       (SELECT sensor FROM ${t.readings} WHERE device = $1 ORDER BY sensor LIMIT 1)
       UNION ALL
       SELECT (SELECT r.sensor FROM ${t.readings} r WHERE r.device = $1 AND r.sensor > s.sensor ORDER BY r.sensor LIMIT 1)
       FROM s WHERE s.sensor IS NOT NULL
     )
     SELECT s.sensor, n.unit, n.description, n.ts
     FROM (SELECT sensor FROM s WHERE sensor IS NOT NULL LIMIT $2) s,
     LATERAL (SELECT unit, description, ts FROM ${t.readings} r WHERE r.device = $1 AND r.sensor = s.sensor ORDER BY ts DESC LIMIT 1) n
     ORDER BY s.sensor`,
    [device, MAX_SENSORS],
  );
  return r.rows.map((x) => ({ sensor: x.sensor, unit: x.unit, description: x.description, newestTs: x.ts }));
}

/**
 * Min, mean and max per time bucket (buckets from the epoch, so their bounds do not move with the
 * window). One index range scan per bucket: a GROUP BY over the window's rows would sort them all,
 * since PostgreSQL cannot know that the bucket grows with ts (docs/benchmarks.md, fleet page).
 */
export async function readSeries(c: pg.ClientBase, t: Tables, q: SeriesQuery): Promise<Bucket[]> {
  const r = await c.query({
    text: `SELECT extract(epoch FROM b) * 1000 AS t, a.lo, a.mean, a.hi, a.n
           FROM generate_series(date_bin($5::float8 * interval '1 millisecond', $3::timestamptz, timestamptz 'epoch'), $4::timestamptz, $5::float8 * interval '1 millisecond') b,
           LATERAL (SELECT min(value) AS lo, avg(value) AS mean, max(value) AS hi, count(*)::int AS n FROM ${t.readings}
                    WHERE device = $1 AND sensor = $2 AND ts >= greatest(b, $3) AND ts < least(b + $5::float8 * interval '1 millisecond', $4)) a
           WHERE a.n > 0 ORDER BY b`,
    values: [q.device, q.sensor, new Date(q.fromMs), new Date(q.toMs), q.bucketMs],
    rowMode: 'array',
  });
  return (r.rows as Array<[string, number | null, number | null, number | null, number]>).map(([tt, lo, mean, hi, n]) => [Number(tt), lo, mean, hi, n]);
}

/**
 * The device's open and dropped gaps (seq ranges) placed in time by the readings around them, those
 * that touch the window. Seqs count every reading of the device, so a band covers all its sensors.
 */
export async function readGapBands(c: pg.ClientBase, t: Tables, device: string, fromMs: number, toMs: number): Promise<GapBand[]> {
  const r = await c.query<{ state: 'open' | 'dropped'; from_seq: number; to_seq: number; reason: string | null; after_ms: number | null; before_ms: number | null }>(
    `SELECT * FROM (
       SELECT g.state, g.from_seq::float8, g.to_seq::float8, g.reason,
              (SELECT extract(epoch FROM r.ts) * 1000 FROM ${t.readings} r WHERE r.device = g.device AND r.seq < g.from_seq ORDER BY r.seq DESC LIMIT 1)::float8 AS after_ms,
              (SELECT extract(epoch FROM r.ts) * 1000 FROM ${t.readings} r WHERE r.device = g.device AND r.seq > g.to_seq ORDER BY r.seq LIMIT 1)::float8 AS before_ms
       FROM ${t.gaps} g WHERE g.device = $1 AND g.state <> 'filled'
     ) b
     WHERE coalesce(b.before_ms, $3) >= $2 AND coalesce(b.after_ms, $2) <= $3
     ORDER BY b.from_seq LIMIT $4`,
    [device, fromMs, toMs, MAX_BANDS],
  );
  return r.rows.map((x) => ({ state: x.state, fromSeq: x.from_seq, toSeq: x.to_seq, afterMs: x.after_ms, beforeMs: x.before_ms, reason: x.reason }));
}

/** The device's backlog (readings waiting on it, from its statuses) per bucket: the most seen, and whether it said offline. */
export async function readBacklog(c: pg.ClientBase, t: Tables, q: Omit<SeriesQuery, 'sensor'>): Promise<Array<[t: number, pending: number | null, offline: boolean]>> {
  const r = await c.query({
    text: `SELECT extract(epoch FROM date_bin($4::float8 * interval '1 millisecond', at, timestamptz 'epoch')) * 1000 AS t,
                  max(pending)::float8, bool_or(NOT online)
           FROM ${t.statusSamples} WHERE device = $1 AND at >= $2 AND at < $3
           GROUP BY 1 ORDER BY 1`,
    values: [q.device, new Date(q.fromMs), new Date(q.toMs), q.bucketMs],
    rowMode: 'array',
  });
  return (r.rows as Array<[string, number | null, boolean | null]>).map(([tt, p, off]) => [Number(tt), p, off === true]);
}

/** Status history older than keepMs goes (run now and then by the collector); returns rows deleted. */
export async function pruneStatusSamples(c: pg.ClientBase, t: Tables, keepMs: number): Promise<number> {
  const r = await c.query(`DELETE FROM ${t.statusSamples} WHERE at < now() - $1::float8 * interval '1 millisecond'`, [keepMs]);
  return r.rowCount ?? 0;
}
