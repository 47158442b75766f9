// The naive steady state (the original demo's design): SENSORS simulated sensors once a second,
// each reading committed in its own transaction (synchronous=FULL), published alone at QoS 1,
// and marked synced in its own transaction when its PUBACK arrives. Same schema as the daemon.
// usage: node naive-writer.mjs DB URL TOPIC SENSORS      (runs until SIGTERM)
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { dist } from '../lib/util.mjs';

const [dbPath, url, topic, sensorsArg = '10'] = process.argv.slice(2);
const { Store } = await dist('store/store.js');
const { uuidv7 } = await dist('util/uuidv7.js');
new Store(dbPath, { synchronous: 'FULL', create: true }).close();
const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
const insert = db.prepare(
  `INSERT INTO transactions (rowid, id, timestamp, amount, sensor, unit, seq) VALUES (?, ?, ?, ?, ?, ?, ?)`,
);
const mark = db.prepare('UPDATE transactions SET synced = 1, sync_timestamp = ? WHERE rowid = ?');
const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 1000, clientId: `naive-writer-${process.pid}` });
client.on('error', () => {});
let seq = 0;
let queue = Promise.resolve();
const values = Array.from({ length: Number(sensorsArg) }, () => 22.5);

function tick() {
  const tsMs = Date.now();
  const ts = new Date(tsMs).toISOString();
  values.forEach((v, i) => {
    values[i] = Math.min(30, Math.max(15, v + (Math.random() * 2 - 1) * 0.5));
    const r = { id: uuidv7(tsMs), seq: ++seq, ts, sensor: `sim-${i}`, value: Math.round(values[i] * 1000) / 1000, unit: '°C' };
    insert.run(r.seq, r.id, r.ts, r.value, r.sensor, r.unit, r.seq);
    // one publish at a time, each waiting for its PUBACK
    queue = queue.then(async () => {
      await client.publishAsync(topic, JSON.stringify({ device: 'naive', ...r }), { qos: 1 });
      mark.run(new Date().toISOString(), r.seq);
    });
  });
}
setTimeout(() => {
  tick();
  setInterval(tick, 1000);
}, 1000 - (Date.now() % 1000));
process.on('SIGTERM', () => {
  client.end(true);
  db.close();
  process.exit(0);
});
