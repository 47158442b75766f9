import { afterEach, describe, expect, it } from 'vitest';
import { SchemaError, StoreUnavailableError } from '../../src/collector/pg/errors.js';
import { SCHEMA_VERSION, VERSION_TABLE } from '../../src/collector/pg/migrations.js';
import type { PgStore } from '../../src/collector/pg/store.js';
import { freePort } from '../helpers/mosquitto.js';
import { testSchema } from '../helpers/postgres.js';
import { item, PREFIX, range, readingsItem, readingsPayload, store } from './helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function fresh(reorderWindowMs = 5000) {
  const s = await testSchema('st');
  const st = store(s.url, s.schema, reorderWindowMs);
  cleanups.push(async () => {
    await st.close();
    await s.cleanup();
  });
  await st.open('migrate');
  return { ...s, st };
}

const device = async (q: (t: string, v?: unknown[]) => Promise<Record<string, unknown>[]>, name: string) =>
  (await q('SELECT highest_seq::int, accounted_seq::int, readings_stored::int, duplicates_absorbed::int, dropped_announced::int, rejected_messages::int, online FROM devices WHERE device = $1', [name]))[0];
const gapsOf = async (q: (t: string, v?: unknown[]) => Promise<Record<string, unknown>[]>, name: string) =>
  (await q('SELECT from_seq::int, to_seq::int, state FROM gaps WHERE device = $1 ORDER BY from_seq', [name])).map((g) => [g.from_seq, g.to_seq, g.state]);

describe('the PostgreSQL store: tables', () => {
  it('creates the tables at start, then finds them at their version; read mode never creates anything', async () => {
    const s = await testSchema('mig');
    cleanups.push(s.cleanup);
    const reader = store(s.url, s.schema);
    await expect(reader.open('read')).rejects.toMatchObject({ problem: 'missing' });
    await reader.close();
    expect(await s.q("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1", [s.schema])).toHaveLength(0);
    const a = store(s.url, s.schema);
    expect(await a.open('migrate')).toEqual({ version: SCHEMA_VERSION, migratedFrom: 0 });
    await a.close();
    const b = store(s.url, s.schema);
    expect(await b.open('migrate')).toEqual({ version: SCHEMA_VERSION, migratedFrom: SCHEMA_VERSION });
    await b.close();
    const tables = (await s.q("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1", [s.schema])).map((r) => r.table_name);
    expect(tables).toEqual(['devices', VERSION_TABLE, 'gaps', 'readings', 'rejected_messages', 'status_samples'].sort());
  });

  it('refuses a newer version of its tables, and tables it did not create, untouched', async () => {
    const { st, q, url, schema } = await fresh();
    await st.write([readingsItem('d', range(1, 3))]);
    await q(`INSERT INTO ${VERSION_TABLE} (version) VALUES (${SCHEMA_VERSION + 1})`);
    const before = await q('SELECT count(*)::int AS n FROM readings');
    const newer = store(url, schema);
    const err = await newer.open('migrate').catch((e) => e);
    await newer.close();
    expect(err).toBeInstanceOf(SchemaError);
    expect(err.problem).toBe('newer');
    expect(err.message).toMatch(/newer than this edge-sensor understands/);
    expect(await q('SELECT count(*)::int AS n FROM readings')).toEqual(before);
    expect((await q(`SELECT max(version)::int AS v FROM ${VERSION_TABLE}`))[0].v).toBe(SCHEMA_VERSION + 1);

    const other = await testSchema('foreign');
    cleanups.push(other.cleanup);
    await other.q(`CREATE SCHEMA ${other.schema}; CREATE TABLE ${other.schema}.readings (x int)`);
    const f = store(other.url, other.schema);
    await expect(f.open('migrate')).rejects.toMatchObject({ problem: 'foreign' });
    await f.close();
  });

  it('says the database is unavailable when nothing listens', async () => {
    const st = store(`postgres://postgres@127.0.0.1:${await freePort()}/test`, 'public');
    await expect(st.open('migrate')).rejects.toBeInstanceOf(StoreUnavailableError);
    await st.close();
  });
});

describe('the PostgreSQL store: writing', () => {
  it('stores each reading once; a batch delivered twice is counted as duplicates absorbed', async () => {
    const { st, q } = await fresh();
    const m1 = readingsItem('pi-1', range(1, 100));
    const out = await st.write([m1, readingsItem('pi-2', range(1, 10))]);
    expect(out).toEqual([
      { kind: 'stored', device: 'pi-1', stored: 100, duplicates: 0 },
      { kind: 'stored', device: 'pi-2', stored: 10, duplicates: 0 },
    ]);
    // the same message again, and a resend that overlaps it (a daemon resending after a timeout)
    const again = await st.write([m1, readingsItem('pi-1', range(90, 120))]);
    expect(again).toEqual([
      { kind: 'stored', device: 'pi-1', stored: 0, duplicates: 100 },
      { kind: 'stored', device: 'pi-1', stored: 20, duplicates: 11 },
    ]);
    expect(await device(q, 'pi-1')).toMatchObject({ highest_seq: 120, accounted_seq: 120, readings_stored: 120, duplicates_absorbed: 111 });
    expect((await q("SELECT count(*)::int AS n FROM readings WHERE device = 'pi-1'"))[0].n).toBe(120);
    expect(await gapsOf(q, 'pi-1')).toEqual([]);
    const r = (await q("SELECT id::text, ts, sensor, value, unit, clock_unsynced, batch FROM readings WHERE device = 'pi-2' AND seq = 3"))[0];
    expect(r).toMatchObject({ sensor: 'sim', value: 0.75, unit: 'C', clock_unsynced: false });
  });

  it('a conflicting duplicate (same seq, another id) is rejected with its reason; the messages beside it are stored', async () => {
    const { st, q } = await fresh();
    await st.write([readingsItem('pi-1', range(1, 10))]);
    const out = await st.write([readingsItem('pi-1', range(11, 20)), readingsItem('pi-1', range(8, 12), { variant: 1 }), readingsItem('pi-1', range(21, 30))]);
    expect(out.map((o) => o.kind)).toEqual(['stored', 'rejected', 'stored']);
    expect(out[1]).toMatchObject({ reason: 'conflicting-duplicate', detail: expect.stringMatching(/seq 8 is stored with id/) });
    const rej = await q('SELECT topic, device, reason, payload_bytes FROM rejected_messages');
    expect(rej).toEqual([{ topic: `${PREFIX}/pi-1/readings`, device: 'pi-1', reason: 'conflicting-duplicate', payload_bytes: expect.any(Number) }]);
    expect(await device(q, 'pi-1')).toMatchObject({ readings_stored: 30, rejected_messages: 1, accounted_seq: 30 });
    expect((await q("SELECT count(*)::int AS n FROM readings WHERE device = 'pi-1' AND id::text LIKE '%'"))[0].n).toBe(30);
  });

  it('gaps: open when a seq is skipped, filled when it arrives late, dropped when announced; seqs below the first seen are a gap', async () => {
    const { st, q } = await fresh(0);
    await st.write([readingsItem('pi-1', range(5, 10)), readingsItem('pi-1', range(21, 30))]);
    expect(await gapsOf(q, 'pi-1')).toEqual([[1, 4, 'open'], [11, 20, 'open']]);
    await st.write([readingsItem('pi-1', range(11, 15))]);
    expect(await gapsOf(q, 'pi-1')).toEqual([[1, 4, 'open'], [11, 15, 'filled'], [16, 20, 'open']]);
    const drop = item(`${PREFIX}/pi-1/dropped`, JSON.stringify({ device: 'pi-1', ranges: [[16, 18], [31, 35]], count: 8, reasons: ['database cap'], ts: new Date().toISOString() }));
    expect(await st.write([drop])).toEqual([{ kind: 'applied', device: 'pi-1' }]);
    expect(await gapsOf(q, 'pi-1')).toEqual([[1, 4, 'open'], [11, 15, 'filled'], [16, 18, 'dropped'], [19, 20, 'open'], [31, 35, 'dropped']]);
    expect(await device(q, 'pi-1')).toMatchObject({ accounted_seq: 35, highest_seq: 30, dropped_announced: 8 });
    // readings after the dropped tail continue without a new gap
    await st.write([readingsItem('pi-1', range(36, 40))]);
    expect((await gapsOf(q, 'pi-1')).filter((g) => g[2] === 'open')).toEqual([[1, 4, 'open'], [19, 20, 'open']]);
    const fleet = await st.fleet();
    expect(fleet.devices[0]).toMatchObject({ device: 'pi-1', openGaps: 2, openReadings: 6, droppedAnnounced: 8, through: 0 });
    // what the end-to-end issue's `stored` message will say: with a reorder window of 0 every open gap is missing
    expect(await st.storedState(['pi-1', 'nobody'], 100)).toEqual([{ device: 'pi-1', through: 0, accounted: 40, missing: [[1, 4], [19, 20]], youngDueInMs: null, syncedThrough: null }]);
    expect((await st.storedState(['pi-1'], 1))[0].missing).toEqual([[1, 4]]);
    await st.write([readingsItem('pi-1', range(1, 4))]);
    expect(await st.storedState(['pi-1'], 100)).toEqual([{ device: 'pi-1', through: 18, accounted: 40, missing: [[19, 20]], youngDueInMs: null, syncedThrough: null }]);
  });

  it('statuses update the device row; an older status does not replace a newer one', async () => {
    const { st, q } = await fresh();
    const status = (state: string, ts: string, pending: number) => item(`${PREFIX}/pi-1/status`, JSON.stringify({ device: 'pi-1', state, pending, ts }));
    await st.write([status('online', '2026-11-26T10:00:05Z', 7)]);
    await st.write([status('offline', '2026-11-26T10:00:01Z', 9)]);
    const d = (await q("SELECT online, last_status, status_ts FROM devices WHERE device = 'pi-1'"))[0];
    expect(d.online).toBe(true);
    expect(d.last_status).toMatchObject({ pending: 7 });
    await st.write([item(`${PREFIX}/pi-1/status`, JSON.stringify({ device: 'pi-1', state: 'offline', reason: 'connection lost' }))]);
    expect(await device(q, 'pi-1')).toMatchObject({ online: false });
    // a retained status (re-sent by the broker on every subscribe) says the state, not that the device was seen
    const retained = item(`${PREFIX}/pi-9/status`, JSON.stringify({ device: 'pi-9', state: 'offline', reason: 'shutdown', pending: 5 }));
    if (retained.kind === 'status') retained.retained = true;
    await st.write([retained]);
    expect((await q("SELECT online, pending::int, last_seen FROM devices WHERE device = 'pi-9'"))[0]).toEqual({ online: false, pending: 5, last_seen: null });
  });

  it('input PostgreSQL refuses is found, rejected as database-refused, and the rest stored', async () => {
    const { st, q } = await fresh();
    const bad = readingsItem('pi-1', range(11, 12));
    if (bad.kind !== 'readings') throw new Error('expected readings');
    bad.readings.ts[1] = '2026-04-31T00:00:00Z'; // past the decoder on purpose
    const out = await st.write([readingsItem('pi-1', range(1, 10)), bad, readingsItem('pi-2', range(1, 5))]);
    expect(out.map((o) => o.kind)).toEqual(['stored', 'rejected', 'stored']);
    expect(out[1]).toMatchObject({ reason: 'database-refused', detail: expect.stringMatching(/SQLSTATE 22/) });
    expect((await q('SELECT count(*)::int AS n FROM readings'))[0].n).toBe(15);
  });

  it('two collectors writing one device at once, out of order: every reading once, gaps exactly the missing seqs', async () => {
    const { st, url, schema, q } = await fresh(0);
    const other = store(url, schema, 0);
    cleanups.push(() => other.close());
    await other.open('migrate');
    // 200 messages of 10 readings, handed alternately to the two stores, in a shuffled order, each
    // message twice; seqs 1001-1010 never come
    const msgs = range(0, 199).filter((i) => i !== 100).flatMap((i) => [i, i]);
    for (let i = msgs.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [msgs[i], msgs[j]] = [msgs[j], msgs[i]];
    }
    const lanes: number[][] = [[], []];
    msgs.forEach((m, i) => lanes[i % 2].push(m));
    await Promise.all(lanes.map(async (lane, k) => {
      const s = k === 0 ? st : other;
      for (let i = 0; i < lane.length; i += 4) await s.write(lane.slice(i, i + 4).map((m) => readingsItem('pi-x', range(m * 10 + 1, m * 10 + 10))));
    }));
    expect((await q("SELECT count(*)::int AS n, count(DISTINCT seq)::int AS d FROM readings WHERE device = 'pi-x'"))[0]).toEqual({ n: 1990, d: 1990 });
    expect(await device(q, 'pi-x')).toMatchObject({ highest_seq: 2000, accounted_seq: 2000, readings_stored: 1990, duplicates_absorbed: 1990 });
    expect((await gapsOf(q, 'pi-x')).filter((g) => g[2] === 'open')).toEqual([[1001, 1010, 'open']]);
  });

  it('a raw readings payload with a UUID in capitals is the same reading as its lower-case copy', async () => {
    const { st } = await fresh();
    const p = readingsPayload('pi-1', [1]);
    await st.write([item(`${PREFIX}/pi-1/readings`, p)]);
    const out = await st.write([item(`${PREFIX}/pi-1/readings`, p.replace(/"id":"([^"]+)"/, (_, id: string) => `"id":"${id.toUpperCase()}"`))]);
    expect(out[0]).toMatchObject({ kind: 'stored', stored: 0, duplicates: 1 });
  });
});

export type { PgStore };
