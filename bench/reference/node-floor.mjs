// The floor of the steady state in Node.js: the least a Node.js process can do for the same durable
// work as the daemon with SENSORS sensors every PERIOD seconds (default 1). One timer a tick; the tick's readings (ids,
// timestamps, a random walk) and the marks of acknowledged rows in one transaction (synchronous=FULL);
// the pending rows published in one QoS 1 message; their seqs noted on PUBACK for the next commit;
// synced rows older than a minute deleted every 10 s. No checks, no logs, no status, no recovery:
// what is left of the daemon's CPU once everything that is not this loop is taken away.
// usage: node node-floor.mjs DB URL TOPIC SENSORS [PERIOD]      (runs until SIGTERM)
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { dist } from '../lib/util.mjs';

const [dbPath, url, topic, sensorsArg = '10', periodArg = '1'] = process.argv.slice(2);
const periodMs = Number(periodArg) * 1000;
const { Store } = await dist('store/store.js');
const { uuidv7 } = await dist('util/uuidv7.js');
new Store(dbPath, { synchronous: 'FULL', create: true }).close(); // the daemon's schema and pragmas
const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
const insert = db.prepare(
  `INSERT INTO transactions (rowid, id, timestamp, amount, description, sensor, unit, seq, flags) VALUES (?, ?, ?, ?, NULL, ?, ?, ?, 0)`,
);
const mark = db.prepare('UPDATE transactions SET synced = 1, sync_timestamp = ? WHERE rowid IN (SELECT value FROM json_each(?)) AND synced = 0');
const take = db.prepare(
  `SELECT id, seq, timestamp AS ts, sensor, amount AS value, unit FROM transactions
   WHERE synced = 0 AND parked_at IS NULL AND seq > ? ORDER BY seq LIMIT 500`,
);
const prune = db.prepare('DELETE FROM transactions WHERE synced = 1 AND rowid <= ?');
const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 1000, clientId: `node-floor-${process.pid}` });
client.on('error', () => {});

const values = Array.from({ length: Number(sensorsArg) }, () => 22.5);
let seq = db.prepare('SELECT coalesce(max(rowid), 0) FROM transactions').pluck().get();
let sent = seq;
let acked = [];
let ticks = 0;
const commit = db.transaction((tsMs, ts) => {
  if (acked.length > 0) {
    mark.run(ts, JSON.stringify(acked));
    acked = [];
  }
  for (let i = 0; i < values.length; i++) {
    values[i] = Math.min(30, Math.max(15, values[i] + (Math.random() * 2 - 1) * 0.5));
    seq++;
    insert.run(seq, uuidv7(tsMs), ts, Math.round(values[i] * 1000) / 1000, `sim-${i}`, '°C', seq);
  }
  if (++ticks % 10 === 0) prune.run(seq - Math.ceil(60_000 / periodMs) * values.length);
});

function tick() {
  const tsMs = Date.now();
  commit.immediate(tsMs, new Date(tsMs).toISOString());
  if (client.connected) {
    const rows = take.all(sent);
    if (rows.length > 0) {
      sent = rows[rows.length - 1].seq;
      client.publish(topic, JSON.stringify({ device: 'floor', readings: rows }), { qos: 1 }, (err) => {
        if (err) sent = Math.min(sent, rows[0].seq - 1);
        else for (const r of rows) acked.push(r.seq);
      });
    }
  }
  setTimeout(tick, periodMs - (Date.now() % periodMs));
}
setTimeout(tick, periodMs - (Date.now() % periodMs));
process.on('SIGTERM', () => {
  client.end(true);
  db.close();
  process.exit(0);
});
