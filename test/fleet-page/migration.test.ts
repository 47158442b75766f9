import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, VERSION_TABLE } from '../../src/collector/pg/migrations.js';
import { PgStore } from '../../src/collector/pg/store.js';
import { silentLogger } from '../../src/util/logger.js';
import { testSchema } from '../helpers/postgres.js';
import { item, PREFIX, range, readingsItem, store } from '../collector/helpers.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe('schema version 2 (the fleet page)', () => {
  it('migrates tables of version 1 with their rows: the sensor index and status_samples added, nothing lost', async () => {
    const s = await testSchema('mig2');
    cleanups.push(s.cleanup);
    // what a collector of version 1 left behind
    await s.q(`CREATE SCHEMA ${s.schema}`);
    await s.q(MIGRATIONS[0](s.schema));
    await s.q(`CREATE TABLE ${VERSION_TABLE} (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
    await s.q(`INSERT INTO ${VERSION_TABLE} (version) VALUES (1)`);
    await s.q(`INSERT INTO readings (device, seq, id, ts, sensor, value, batch) SELECT 'old', g, gen_random_uuid(), now() - g * interval '1 minute', 'sim', g, gen_random_uuid() FROM generate_series(1, 100) g`);

    const st = store(s.url, s.schema);
    cleanups.unshift(() => st.close());
    expect(await st.open('migrate')).toEqual({ version: 2, migratedFrom: 1 });
    expect((await s.q<{ n: number }>('SELECT count(*)::int AS n FROM readings'))[0].n).toBe(100);
    const idx = await s.q<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND indexname = 'readings_device_sensor_ts'", [s.schema]);
    expect(idx[0].indexdef).toMatch(/\(device, sensor, ts\) INCLUDE \(value\)/);
    // the series of the old rows now reads from the new index
    const buckets = await st.series({ device: 'old', sensor: 'sim', fromMs: Date.now() - 3_600_000 * 3, toMs: Date.now(), bucketMs: 60_000 });
    expect(buckets.reduce((a, b) => a + b[4], 0)).toBe(100);

    // live statuses are sampled from now on; the broker's retained copy is not
    await st.write([readingsItem('old', range(101, 102))]);
    const status = (pending: number) => item(`${PREFIX}/old/status`, JSON.stringify({ device: 'old', state: 'online', pending, version: '0', ts: new Date().toISOString() }));
    await st.write([status(7)]);
    const retained = { ...status(9), retained: true } as ReturnType<typeof status>;
    await st.write([retained]);
    expect(await s.q('SELECT device, online, pending::int FROM status_samples')).toEqual([{ device: 'old', online: true, pending: 7 }]);
    // pruning keeps what is younger than keepMs
    await s.q("INSERT INTO status_samples (device, at, online, pending) VALUES ('old', now() - interval '40 days', true, 1)");
    expect(await st.pruneStatusHistory(30 * 86_400_000)).toBe(1);
    expect((await s.q<{ n: number }>('SELECT count(*)::int AS n FROM status_samples'))[0].n).toBe(1);
  });

  it('status history: one sample per device per statusHistory.everyMs, and one at every change of its online state', async () => {
    const s = await testSchema('thin');
    cleanups.push(s.cleanup);
    const st = new PgStore({ url: s.url, schema: s.schema, connectTimeoutMs: 3000, statementTimeoutMs: 10_000, lockTimeoutMs: 5000, reorderWindowMs: 5000, statusEveryMs: 3_600_000 }, silentLogger());
    cleanups.unshift(() => st.close());
    await st.open('migrate');
    const status = (device: string, state: string, pending: number) => item(`${PREFIX}/${device}/status`, JSON.stringify({ device, state, pending, version: '0', ts: new Date().toISOString() }));
    for (const [state, pending] of [['online', 1], ['online', 2], ['online', 3], ['offline', 4], ['offline', 5], ['online', 6]] as const) {
      await st.write([status('a', state, pending), status('b', 'online', pending)]);
    }
    const rows = await s.q<{ device: string; online: boolean; pending: number }>('SELECT device, online, pending::int FROM status_samples ORDER BY device, at, pending');
    // a's return online within the hour is not sampled: its first online sample is still in the window
    expect(rows).toEqual([
      { device: 'a', online: true, pending: 1 },
      { device: 'a', online: false, pending: 4 },
      { device: 'b', online: true, pending: 1 },
    ]);
  });
});
