// Builds a database of pending readings shaped like the default sensors' (sim-temp every 5 s,
// cpu-load every 10 s: 0.3 readings/s), through the daemon's own Store in large transactions
// with synchronous=NORMAL (building is not what is measured), checkpointed into one file that
// each contender gets a fresh copy of.
import Database from 'better-sqlite3';
import { copyFileSync } from 'node:fs';
import { dist } from './util.mjs';

const { Store } = await dist('store/store.js');

/** ticks of the default sensors, oldest first, ending at endMs */
export function* defaultTicks(n, endMs = Date.now(), seed = 1) {
  let a = seed >>> 0;
  const rand = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  let temp = 22.5;
  let made = 0;
  // 3 readings every 10 s: at :00 both sensors, at :05 sim-temp only
  let t = endMs - Math.ceil(n / 3) * 10_000;
  for (let i = 0; made < n; i++, t += 5000) {
    temp = Math.min(30, Math.max(15, temp + (rand() * 2 - 1) * 0.5));
    const readings = [{ sensor: 'sim-temp', value: Math.round(temp * 1000) / 1000, unit: '°C' }];
    if (i % 2 === 0 && made + 1 < n) readings.push({ sensor: 'cpu-load', value: Math.round(rand() * 4000) / 100, unit: '%' });
    made += readings.length;
    yield { tsMs: t, flags: 0, readings };
  }
}

export function buildBacklog(path, n) {
  const store = new Store(path, { synchronous: 'NORMAL', create: true });
  let chunk = [];
  let rows = 0;
  for (const tick of defaultTicks(n)) {
    chunk.push(tick);
    rows += tick.readings.length;
    if (rows >= 20_000) {
      store.appendTicks(chunk);
      chunk = [];
      rows = 0;
    }
  }
  if (chunk.length) store.appendTicks(chunk);
  store.close();
  const db = new Database(path);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
}

export function copyDb(from, to) {
  copyFileSync(from, to);
}
