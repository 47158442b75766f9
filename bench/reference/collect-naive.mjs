// The naive collector: what a first attempt looks like. Subscribes, and for every message
// INSERTs its readings one statement each (autocommit), then acknowledges it (MQTT 5
// customHandleAcks, one message at a time). Runs DURATION_MS on a queued backlog, prints {"rows","ms"}.
// usage: node collect-naive.mjs PGURL SCHEMA BROKER_URL CLIENT_ID TOPIC_FILTER DURATION_MS
import pg from 'pg';
import mqtt from 'mqtt';
import { dist } from '../lib/util.mjs';

const [url, schema, brokerUrl, clientId, filter, durationMs] = process.argv.slice(2);
const { MIGRATIONS } = await dist('collector/pg/migrations.js');
const db = new pg.Client({ connectionString: url });
await db.connect();
await db.query(`CREATE SCHEMA ${schema}`);
await db.query(MIGRATIONS[0](schema));
const insert = `INSERT INTO ${schema}.readings (device, seq, id, ts, sensor, value, unit, batch) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING`;
let rows = 0;
let t0;
let stopped = false;
let current = Promise.resolve();
const client = mqtt.connect(brokerUrl, {
  protocolVersion: 5,
  clientId,
  clean: false,
  properties: { sessionExpiryInterval: 3600 },
  reconnectPeriod: 0,
  customHandleAcks: (_topic, payload, _packet, done) => {
    t0 ??= performance.now();
    const m = JSON.parse(payload.toString());
    current = (async () => {
      for (const r of m.readings) {
        if (stopped) return;
        rows += (await db.query(insert, [m.device, r.seq, r.id, r.ts, r.sensor, r.value, r.unit, m.batch])).rowCount;
      }
      if (!stopped) done(0);
    })();
  },
});
client.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
client.on('connect', () => client.subscribe(filter, { qos: 1 }));
await new Promise((r) => setTimeout(r, Number(durationMs)));
stopped = true;
const ms = performance.now() - (t0 ?? performance.now());
await current;
client.end(true);
await db.end();
console.log(JSON.stringify({ rows, ms }));
