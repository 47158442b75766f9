// One ingest contender in its own process, timed from the first write to the last commit.
//   daemon: the daemon's write path: Sampler.tick (a simulated sensor of `tx` readings per tick)
//           → one transaction per tick through Store.appendTicks, synchronous=FULL.
//   raw:    bare better-sqlite3 inserting the same rows (ids, timestamps, values made in advance)
//           in transactions of the same size into the same schema, synchronous=FULL.
// usage: node ingest-worker.mjs daemon|raw DB TOTAL TX   → prints {"rows":…, "ms":…}
import Database from 'better-sqlite3';
import { dist } from '../lib/util.mjs';

const [mode, dbPath, totalArg, txArg] = process.argv.slice(2);
const total = Number(totalArg);
const tx = Number(txArg);
const { Store } = await dist('store/store.js');

if (mode === 'daemon') {
  const { Sampler } = await dist('sampler/sampler.js');
  const { SimulatedSensor } = await dist('sensors/simulated.js');
  const { silentLogger } = await dist('util/logger.js');
  const store = new Store(dbPath, { synchronous: 'FULL', create: true });
  const sensor = new SimulatedSensor({ name: 'sim', unit: '°C', count: tx, min: 15, max: 30, step: 0.5, seed: 1 });
  let written = 0;
  let finished;
  // the store's append, then the next tick once this one is committed: one tick, one transaction
  const sink = {
    appendTicks(ticks) {
      store.appendTicks(ticks);
      for (const t of ticks) written += t.readings.length;
      if (written >= total) finished();
      else void sampler.tick(sensor);
    },
  };
  const sampler = new Sampler([], sink, silentLogger(), { readTimeoutMs: 10_000, clockFloorMs: 0 });
  const t0 = performance.now();
  await new Promise((resolve) => {
    finished = resolve;
    void sampler.tick(sensor);
  });
  const ms = performance.now() - t0;
  store.close();
  process.stdout.write(JSON.stringify({ rows: written, ms }) + '\n');
} else {
  const { uuidv7 } = await dist('util/uuidv7.js');
  const { SimulatedSensor } = await dist('sensors/simulated.js');
  new Store(dbPath, { synchronous: 'FULL', create: true }).close(); // the same schema
  const db = new Database(dbPath);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  const insert = db.prepare(
    `INSERT INTO transactions (rowid, id, timestamp, amount, description, sensor, unit, seq, flags)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const sensor = new SimulatedSensor({ name: 'sim', unit: '°C', count: tx, min: 15, max: 30, step: 0.5, seed: 1 });
  const ticks = [];
  for (let seq = 1; seq <= total; ) {
    const tsMs = Date.now();
    const ts = new Date(tsMs).toISOString();
    const rows = sensor.read().map((r) => [seq, uuidv7(tsMs), ts, r.value, null, r.sensor, r.unit, seq++, 0]);
    ticks.push(rows);
  }
  const write = db.transaction((rows) => {
    for (const r of rows) insert.run(r);
  });
  const t0 = performance.now();
  for (const rows of ticks) write.immediate(rows);
  const ms = performance.now() - t0;
  db.close();
  process.stdout.write(JSON.stringify({ rows: total, ms }) + '\n');
}
