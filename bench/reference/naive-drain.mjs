// The original Python demo's design: one reading per publish, wait for its PUBACK before the
// next, mark each row synced in its own transaction (synchronous=FULL). Runs for DURATION ms
// after connecting, then prints the number of rows it marked and the time it took, as JSON.
// usage: node naive-drain.mjs DB URL TOPIC DEVICE DURATION_MS
import Database from 'better-sqlite3';
import mqtt from 'mqtt';

const [dbPath, url, topic, device, durationMs = '3000'] = process.argv.slice(2);
const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
const next = db.prepare(
  `SELECT id, seq, timestamp AS ts, sensor, amount AS value, unit FROM transactions
   WHERE synced = 0 AND parked_at IS NULL ORDER BY seq LIMIT 1`,
);
const mark = db.prepare('UPDATE transactions SET synced = 1, sync_timestamp = ? WHERE rowid = ?');

const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `ref-naive-${process.pid}` });
client.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
client.on('connect', async () => {
  const start = performance.now();
  const end = start + Number(durationMs);
  let marked = 0;
  while (performance.now() < end) {
    const r = next.get();
    if (!r) break;
    await client.publishAsync(topic, JSON.stringify({ device, ...r }), { qos: 1 });
    mark.run(new Date().toISOString(), r.seq);
    marked++;
  }
  const ms = performance.now() - start;
  await client.endAsync();
  db.close();
  process.stdout.write(JSON.stringify({ marked, ms }) + '\n');
});
