// The reference drain loop: only the necessary work, none of the daemon's structure. Takes the
// oldest pending rows, encodes the daemon's payload, publishes QoS 1 with at most WINDOW batches
// awaiting PUBACK, and marks a batch's rows synced (one transaction, synchronous=FULL) when its
// PUBACK arrives. Exits when nothing is pending and nothing is in flight.
// usage: node drain-loop.mjs DB URL TOPIC DEVICE BATCH WINDOW
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { randomUUID } from 'node:crypto';

const [dbPath, url, topic, device, batchSize = '500', windowSize = '8'] = process.argv.slice(2);
const db = new Database(dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = FULL');
const take = db.prepare(
  `SELECT id, seq, timestamp AS ts, sensor, amount AS value, unit, description, flags FROM transactions
   WHERE synced = 0 AND parked_at IS NULL AND seq > ? ORDER BY seq LIMIT ?`,
);
const mark = db.prepare('UPDATE transactions SET synced = 1, sync_timestamp = ? WHERE rowid = ?');
const markBatch = db.transaction((seqs, at) => {
  for (const s of seqs) mark.run(at, s);
});

const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `ref-drain-${process.pid}` });
client.on('error', (e) => {
  console.error(e.message);
  process.exit(1);
});
let cursor = 0;
let inFlight = 0;
let done = false;

function pump() {
  while (!done && inFlight < Number(windowSize)) {
    const rows = take.all(cursor, Number(batchSize));
    if (rows.length === 0) {
      done = true;
      break;
    }
    cursor = rows[rows.length - 1].seq;
    const readings = rows.map((r) => {
      const o = { id: r.id, seq: r.seq, ts: r.ts, sensor: r.sensor, value: r.value, unit: r.unit };
      if (r.description !== null) o.description = r.description;
      if (r.flags & 1) o.clock = 'unsynced';
      return o;
    });
    const seqs = rows.map((r) => r.seq);
    inFlight++;
    client.publish(topic, JSON.stringify({ device, batch: randomUUID(), readings }), { qos: 1 }, (err) => {
      if (err) throw err;
      markBatch(seqs, new Date().toISOString());
      inFlight--;
      pump();
    });
  }
  if (done && inFlight === 0) client.end(false, {}, () => db.close());
}
client.on('connect', pump);
