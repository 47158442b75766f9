// The limit of the client and the link: the daemon's payloads for every pending row, encoded in
// advance, then published from memory with the same window. Nothing is read or written during
// the timed part. Prints "ready" when the payloads are encoded (the harness times from there).
// usage: node link-only.mjs DB URL TOPIC DEVICE BATCH WINDOW
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { randomUUID } from 'node:crypto';

const [dbPath, url, topic, device, batchSize = '500', windowSize = '8'] = process.argv.slice(2);
const db = new Database(dbPath, { readonly: true });
const take = db.prepare(
  `SELECT id, seq, timestamp AS ts, sensor, amount AS value, unit FROM transactions
   WHERE synced = 0 AND parked_at IS NULL AND seq > ? ORDER BY seq LIMIT ?`,
);
const payloads = [];
for (let cursor = 0; ; ) {
  const rows = take.all(cursor, Number(batchSize));
  if (rows.length === 0) break;
  cursor = rows[rows.length - 1].seq;
  payloads.push(Buffer.from(JSON.stringify({ device, batch: randomUUID(), readings: rows })));
}
db.close();
process.stdout.write('ready\n');

const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `ref-link-${process.pid}` });
client.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
let next = 0;
let inFlight = 0;
function pump() {
  while (next < payloads.length && inFlight < Number(windowSize)) {
    inFlight++;
    client.publish(topic, payloads[next++], { qos: 1 }, (err) => {
      if (err) throw err;
      inFlight--;
      pump();
    });
  }
  if (next === payloads.length && inFlight === 0) client.end();
}
client.on('connect', pump);
