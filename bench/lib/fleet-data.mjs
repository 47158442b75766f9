// A fleet's history in the collector's tables, generated inside PostgreSQL (generate_series, no
// round trip per row): `devices` devices with `sensors` sensors each, one reading per sensor every
// `stepS` seconds for `days` days up to now; every 50th device has an open gap of a day, every 70th
// a dropped one; 5% offline, 3% with a backlog; an hourly status history for the last 30 days; and
// one device at 1 Hz for the last `denseDays` days (the "a week of 1 Hz data"). The tables
// are the collector's own (its migrations); the readings' indexes are built after the rows, as a
// restore would, then VACUUM ANALYZE (what autovacuum does to a table that is not new).
import pg from 'pg';
import { join } from 'node:path';
import { ROOT } from './util.mjs';

/** The size: 1,000 devices, a year, two sensors every 15 min (70 million readings). */
export const FULL = { devices: 1000, sensors: 2, stepS: 900, days: 365, denseDays: 7 };
/** What the bench generates by default: the same fleet and year, a reading an hour (17.5 million). */
export const DEFAULT = { devices: 1000, sensors: 2, stepS: 3600, days: 365, denseDays: 7 };
/** --quick: 30 days. */
export const QUICK = { devices: 1000, sensors: 2, stepS: 3600, days: 30, denseDays: 1 };

export const DENSE_DEVICE = 'dense-1hz';
export const SENSORS = ['temperature', 'humidity', 'pressure', 'voltage'];
const UNITS = ['°C', '%', 'hPa', 'V'];

export const deviceName = (i) => `pi-${String(i).padStart(4, '0')}`;

/**
 * Creates the collector's tables in `schema` (dropped first) and fills them. Returns the row
 * count, the seconds each step took and the database's size. `log` gets a line per step.
 */
export async function generateFleet(url, schema, p, log = () => {}) {
  if (p.sensors > SENSORS.length) throw new Error(`at most ${SENSORS.length} sensors`);
  const { openSchema, tableNames } = await import(join(ROOT, 'dist/collector/pg/schema.js'));
  const t = tableNames(schema);
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  const times = {};
  const step = async (name, fn) => {
    const t0 = Date.now();
    await fn();
    times[name] = Math.round((Date.now() - t0) / 100) / 10;
    log(`  ${name}: ${times[name]} s`);
  };
  try {
    await c.query(`SET maintenance_work_mem = '512MB'`);
    await c.query(`SET synchronous_commit = off`);
    await c.query(`DROP SCHEMA IF EXISTS ${t.schema} CASCADE`);
    await openSchema(c, schema, 'migrate');
    // the readings' indexes exactly as the migrations made them, built again after the rows
    const defs = (await c.query(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'readings' ORDER BY indexname`, [schema])).rows;
    await c.query(`ALTER TABLE ${t.readings} DROP CONSTRAINT readings_pkey`);
    for (const d of defs) if (d.indexname !== 'readings_pkey') await c.query(`DROP INDEX ${t.schema}.${pg.escapeIdentifier(d.indexname)}`);

    const k = Math.floor((p.days * 86_400) / p.stepS);
    const s = p.sensors;
    const hole = Math.max(1, Math.floor(86_400 / p.stepS));
    const openAt = Math.floor(k * 0.6);
    const dropAt = Math.floor(k * 0.3);
    const chunk = 25;
    await step('readings', async () => {
      for (let d0 = 1; d0 <= p.devices; d0 += chunk) {
        // device d's round r is at now - (k - 1 - r) steps, d seconds earlier so that devices do not tick together
        await c.query(
          `INSERT INTO ${t.readings} (device, seq, id, ts, sensor, value, unit, batch)
           SELECT 'pi-' || lpad(d::text, 4, '0'), r::bigint * $1 + j + 1, gen_random_uuid(),
                  date_trunc('second', now()) - ($2::bigint - 1 - r) * $3 * interval '1 second' - d * interval '1 second',
                  ($4::text[])[j + 1], 20 + 5 * sin(r / 24.0 + d) + j * 30, ($5::text[])[j + 1], '00000000-0000-4000-8000-000000000000'::uuid
           FROM generate_series($6::int, $7::int) d, generate_series(0, $2::int - 1) r, generate_series(0, $1::int - 1) j
           WHERE NOT (d % 50 = 0 AND r >= $8 AND r < $8 + $10) AND NOT (d % 70 = 0 AND r >= $9 AND r < $9 + $10)`,
          [s, k, p.stepS, SENSORS.slice(0, s), UNITS.slice(0, s), d0, Math.min(p.devices, d0 + chunk - 1), openAt, dropAt, hole],
        );
        if ((d0 - 1) % 250 === 0) log(`    devices ${d0}-${Math.min(p.devices, d0 + 249)}`);
      }
      const n = p.denseDays * 86_400;
      await c.query(
        `INSERT INTO ${t.readings} (device, seq, id, ts, sensor, value, unit, batch)
         SELECT $1, i, gen_random_uuid(), date_trunc('second', now()) - ($2 - i) * interval '1 second', 'temperature', 20 + sin(i / 600.0), '°C', '00000000-0000-4000-8000-000000000000'::uuid
         FROM generate_series(1, $2::int) i`,
        [DENSE_DEVICE, n],
      );
    });
    await step('devices, gaps, status history', async () => {
      await c.query(
        `INSERT INTO ${t.devices} (device, first_seen, last_seen, last_status, online, status_ts, pending, highest_seq, accounted_seq, newest_ts, readings_stored, dropped_announced)
         SELECT name, now() - $3 * interval '1 day',
                CASE WHEN offline THEN now() - interval '2 days' ELSE now() - (d % 60) * interval '1 second' END,
                jsonb_build_object('device', name, 'state', CASE WHEN offline THEN 'offline' ELSE 'online' END, 'pending', pending),
                NOT offline, now(), pending, $1::bigint * $2, $1::bigint * $2, date_trunc('second', now()) - d * interval '1 second',
                $1::bigint * $2 - (CASE WHEN d % 50 = 0 THEN $4 ELSE 0 END + CASE WHEN d % 70 = 0 THEN $4 ELSE 0 END) * $2,
                CASE WHEN d % 70 = 0 THEN $4 * $2 ELSE 0 END
         FROM (SELECT d, 'pi-' || lpad(d::text, 4, '0') AS name, d % 20 = 7 AS offline, CASE WHEN d % 33 = 5 THEN 5000 + d ELSE 0 END AS pending
               FROM generate_series(1, $5::int) d) x`,
        [k, s, p.days, hole, p.devices],
      );
      const n = p.denseDays * 86_400;
      await c.query(`INSERT INTO ${t.devices} (device, last_seen, online, pending, highest_seq, accounted_seq, newest_ts, readings_stored) VALUES ($1, now(), true, 0, $2, $2, date_trunc('second', now()), $2)`, [DENSE_DEVICE, n]);
      await c.query(
        `INSERT INTO ${t.gaps} (device, from_seq, to_seq, state, reason, opened_at, closed_at)
         SELECT 'pi-' || lpad(d::text, 4, '0'), $1::bigint * $2 + 1, ($1::bigint + $4) * $2, 'open', NULL, now() - interval '100 days', NULL FROM generate_series(50, $5::int, 50) d
         UNION ALL
         SELECT 'pi-' || lpad(d::text, 4, '0'), $3::bigint * $2 + 1, ($3::bigint + $4) * $2, 'dropped', 'database cap', now() - interval '200 days', now() - interval '199 days' FROM generate_series(70, $5::int, 70) d`,
        [openAt, s, dropAt, hole, p.devices],
      );
      await c.query(
        `INSERT INTO ${t.statusSamples} (device, at, online, pending)
         SELECT 'pi-' || lpad(d::text, 4, '0'), now() - h * interval '1 hour' - d * interval '1 second', d % 20 <> 7,
                CASE WHEN d % 33 = 5 THEN (5000 + d) * (720 - h) / 720 ELSE (h * d) % 7 END
         FROM generate_series(1, $1::int) d, generate_series(0, 719) h`,
        [p.devices],
      );
    });
    await step('indexes', async () => {
      await c.query(`ALTER TABLE ${t.readings} ADD CONSTRAINT readings_pkey PRIMARY KEY (device, seq)`);
      for (const d of defs) if (d.indexname !== 'readings_pkey') await c.query(d.indexdef);
    });
    await step('vacuum analyze', async () => {
      for (const x of [t.readings, t.devices, t.gaps, t.statusSamples]) await c.query(`VACUUM ANALYZE ${x}`);
    });
    const rows = Number((await c.query(`SELECT count(*) AS n FROM ${t.readings}`)).rows[0].n);
    const bytes = Number((await c.query(`SELECT pg_total_relation_size($1::regclass) AS b`, [t.readings])).rows[0].b);
    return { rows, readingsBytes: bytes, times, rounds: k };
  } finally {
    await c.end();
  }
}
