// The collector's reference: only the necessary work. The same readings, in the same batches,
// straight from memory into the same readings table, one INSERT … SELECT … FROM unnest(…) ON
// CONFLICT DO NOTHING per batch (autocommit), one after the other. Prints {"rows","ms"}.
// usage: node collect-raw.mjs PGURL SCHEMA DEVICES PER_DEVICE BATCH
import pg from 'pg';
import { dist } from '../lib/util.mjs';
import { deviceName, batchId, plan, readings } from '../lib/collect-data.mjs';

const [url, schema, devices, perDevice, batch] = process.argv.slice(2);
const { MIGRATIONS } = await dist('collector/pg/migrations.js');
const client = new pg.Client({ connectionString: url });
await client.connect();
await client.query(`CREATE SCHEMA ${schema}`);
await client.query(MIGRATIONS[0](schema));

const batches = [];
for (const m of plan({ devices: Number(devices), perDevice: Number(perDevice), batch: Number(batch) })) {
  const rs = readings(m.d, m.first, m.count);
  const dev = deviceName(m.d);
  const b = batchId(m.d, m.first);
  batches.push([rs.map(() => dev), rs.map((r) => r.seq), rs.map((r) => r.id), rs.map((r) => r.ts), rs.map((r) => r.sensor), rs.map((r) => r.value), rs.map((r) => r.unit), rs.map(() => null), rs.map(() => false), rs.map(() => b)]);
}
const sql = `INSERT INTO ${schema}.readings (device, seq, id, ts, sensor, value, unit, description, clock_unsynced, batch)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::float8[], $7::text[], $8::text[], $9::boolean[], $10::uuid[])
  ON CONFLICT (device, seq) DO NOTHING`;
const t0 = performance.now();
let rows = 0;
for (const values of batches) rows += (await client.query(sql, values)).rowCount;
const ms = performance.now() - t0;
await client.end();
console.log(JSON.stringify({ rows, ms }));
