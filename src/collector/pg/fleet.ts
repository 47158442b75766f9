import type pg from 'pg';
import type { GapState } from '../gaps.js';
import type { Tables } from './schema.js';

export interface FleetDevice {
  device: string;
  online: boolean | null;
  lastSeen: Date | null;
  lastStatus: Record<string, unknown> | null;
  /** readings waiting on the device, from the last status that said */
  pending: number | null;
  readingsStored: number;
  highestSeq: number;
  newestTs: Date | null;
  duplicatesAbsorbed: number;
  droppedAnnounced: number;
  rejectedMessages: number;
  openGaps: number;
  openReadings: number;
  /** every reading up to this seq is stored or announced dropped (what issue 16's `stored` message carries) */
  through: number;
  /** readings the device says the broker acknowledged and the collector has not confirmed (its last status, with sync.endToEnd) */
  unconfirmed: number | null;
}

export interface FleetSnapshot {
  /** the database's clock, so that ages do not depend on this machine's */
  now: Date;
  devices: FleetDevice[];
  rejected: Array<{ reason: string; count: number }>;
}

export interface GapListing {
  device: string;
  known: boolean;
  gaps: Array<{ from: number; to: number; state: GapState; reason: string | null; openedAt: Date; closedAt: Date | null }>;
  truncated: boolean;
}

export async function readFleet(c: pg.ClientBase, t: Tables): Promise<FleetSnapshot> {
  const now = await c.query<{ now: Date }>('SELECT now() AS now');
  const r = await c.query<Record<string, unknown>>(
    `SELECT d.device, d.online, d.last_seen, d.last_status, d.pending::float8, d.readings_stored::float8, d.highest_seq::float8, d.accounted_seq::float8,
            d.newest_ts, d.duplicates_absorbed::float8, d.dropped_announced::float8, d.rejected_messages::float8,
            CASE WHEN jsonb_typeof(d.last_status->'unconfirmed') = 'number'
                 THEN greatest(0, least((d.last_status->>'unconfirmed')::numeric, 9007199254740991))::float8 END AS unconfirmed,
            coalesce(g.ranges, 0)::float8 AS open_gaps, coalesce(g.readings, 0)::float8 AS open_readings, g.first_open::float8
     FROM ${t.devices} d
     LEFT JOIN (SELECT device, count(*) AS ranges, sum(to_seq - from_seq + 1) AS readings, min(from_seq) AS first_open
                FROM ${t.gaps} WHERE state = 'open' GROUP BY device) g USING (device)
     ORDER BY d.device`,
  );
  const rej = await c.query<{ reason: string; count: number }>(`SELECT reason, count(*)::float8 AS count FROM ${t.rejected} GROUP BY reason ORDER BY reason`);
  return {
    now: now.rows[0].now,
    devices: r.rows.map((x) => ({
      device: x.device as string,
      online: x.online as boolean | null,
      lastSeen: x.last_seen as Date | null,
      lastStatus: x.last_status as Record<string, unknown> | null,
      pending: x.pending as number | null,
      readingsStored: x.readings_stored as number,
      highestSeq: x.highest_seq as number,
      newestTs: x.newest_ts as Date | null,
      duplicatesAbsorbed: x.duplicates_absorbed as number,
      droppedAnnounced: x.dropped_announced as number,
      rejectedMessages: x.rejected_messages as number,
      openGaps: x.open_gaps as number,
      openReadings: x.open_readings as number,
      through: x.first_open === null ? (x.accounted_seq as number) : (x.first_open as number) - 1,
      unconfirmed: x.unconfirmed === null ? null : Math.floor(x.unconfirmed as number),
    })),
    rejected: rej.rows,
  };
}

export async function readGaps(c: pg.ClientBase, t: Tables, device: string, limit: number): Promise<GapListing> {
  const known = await c.query(`SELECT 1 FROM ${t.devices} WHERE device = $1`, [device]);
  const r = await c.query<{ from_seq: number; to_seq: number; state: GapState; reason: string | null; opened_at: Date; closed_at: Date | null }>(
    `SELECT from_seq::float8, to_seq::float8, state, reason, opened_at, closed_at FROM ${t.gaps} WHERE device = $1 ORDER BY from_seq, opened_at LIMIT $2`,
    [device, limit + 1],
  );
  return {
    device,
    known: known.rowCount === 1,
    gaps: r.rows.slice(0, limit).map((g) => ({ from: g.from_seq, to: g.to_seq, state: g.state, reason: g.reason, openedAt: g.opened_at, closedAt: g.closed_at })),
    truncated: r.rows.length > limit,
  };
}

/** What a device is told of its readings (issue 16's retained `stored` message): through, and what is missing. */
export interface StoredState {
  device: string;
  /** every seq up to this is stored or announced dropped */
  through: number;
  /** the highest seq stored or announced dropped (gaps below it are open, dropped or filled) */
  accounted: number;
  /** open gaps older than the reorder window, lowest first, at most the limit asked for */
  missing: Array<[number, number]>;
  /** the soonest an open gap younger than the reorder window becomes old enough to be asked for (ms from now) */
  youngDueInMs: number | null;
  /** the highest seq the device says the broker acknowledged (its last status), when it says */
  syncedThrough: number | null;
}

/**
 * From the devices' rows, their last status and the partial index of unfilled gaps: one query
 * for any number of devices, at most `limit` gaps each.
 */
export async function readStoredState(c: pg.ClientBase, t: Tables, devices: readonly string[], reorderWindowMs: number, limit: number): Promise<StoredState[]> {
  const r = await c.query<{ device: string; accounted: number; synced_through: number | null; from_seq: number | null; to_seq: number | null; due_in_ms: number | null }>(
    `SELECT d.device, d.accounted_seq::float8 AS accounted,
            CASE WHEN jsonb_typeof(d.last_status->'syncedThrough') = 'number'
                 THEN greatest(0, least((d.last_status->>'syncedThrough')::numeric, 9007199254740991))::float8 END AS synced_through,
            g.from_seq::float8, g.to_seq::float8,
            (extract(epoch FROM g.opened_at - now()) * 1000 + $2)::float8 AS due_in_ms
     FROM ${t.devices} d
     LEFT JOIN LATERAL (SELECT from_seq, to_seq, opened_at FROM ${t.gaps} g
                        WHERE g.device = d.device AND g.state = 'open' ORDER BY g.from_seq LIMIT $3) g ON true
     WHERE d.device = ANY($1::text[]) ORDER BY d.device, g.from_seq`,
    [devices, reorderWindowMs, limit],
  );
  const out = new Map<string, StoredState>();
  for (const x of r.rows) {
    let s = out.get(x.device);
    if (!s) {
      s = { device: x.device, through: x.from_seq === null ? x.accounted : x.from_seq - 1, accounted: x.accounted, missing: [], youngDueInMs: null, syncedThrough: x.synced_through === null ? null : Math.floor(x.synced_through) };
      out.set(x.device, s);
    }
    if (x.from_seq === null || x.to_seq === null || x.due_in_ms === null) continue;
    if (x.due_in_ms <= 0) s.missing.push([x.from_seq, x.to_seq]);
    else s.youngDueInMs = Math.min(s.youngDueInMs ?? Infinity, x.due_in_ms);
  }
  return [...out.values()];
}
