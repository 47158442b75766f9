import { afterEach, describe, expect, it } from 'vitest';
import { MIGRATIONS, VERSION_TABLE } from '../../src/collector/pg/migrations.js';
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
});
