import { afterAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { parseConfig } from '../src/config/load.js';
import { Daemon } from '../src/daemon.js';
import { Supervisor } from '../src/supervisor.js';
import { Store } from '../src/store/store.js';
import { StorageKeeper, StorageFullError } from '../src/store/keeper.js';
import { silentLogger } from '../src/util/logger.js';
import { makeTmp } from './helpers/tmp.js';
import { fill, reading } from './helpers/stack.js';
import { waitFor } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

function supervised(name: string) {
  const db = join(tmp.dir, `${name}.db`);
  const config = parseConfig({ device: { id: name }, database: { path: db }, mqtt: { url: 'mqtt://127.0.0.1:1' }, sensors: [], log: { level: 'silent' } });
  const made: Daemon[] = [];
  const sup = new Supervisor((replaceDatabase) => {
    const d = new Daemon(config, silentLogger(), { replaceDatabase });
    made.push(d);
    return d;
  }, silentLogger());
  const signals = new EventEmitter();
  sup.listen(signals);
  return { db, sup, made, signal: (s: NodeJS.Signals) => signals.emit(s, s) };
}

const events = (db: string, type: string) => {
  const d = new Database(db, { readonly: true });
  try {
    return d.prepare('SELECT details FROM sync_log WHERE event_type = ?').pluck().all(type) as string[];
  } finally {
    d.close();
  }
};

describe('supervisor', () => {
  it('replaces a daemon whose database was found damaged while running by one on a fresh database', async () => {
    const s = supervised('replace');
    await s.sup.start();
    const first = s.sup.daemon;
    // the keeper or the background check found the damage (each part that does reports it)
    first.emit('damaged', 'test: found damaged');
    first.emit('damaged', 'test: found damaged again');
    await waitFor(() => s.made.length === 2 && s.sup.daemon === s.made[1], 10_000, 'a second daemon');
    await waitFor(() => events(s.db, 'database_replaced').length === 1, 10_000, 'the fresh database');
    expect(JSON.parse(events(s.db, 'database_replaced')[0])).toMatchObject({ reason: 'test: found damaged' });
    expect(readdirSync(tmp.dir).filter((f) => f.startsWith('replace.db.damaged-') && !/-(wal|shm)$/.test(f))).toHaveLength(1);
    // the first one was stopped (its connection closed) before its database was moved aside
    expect(() => first.statusPayload()).toThrow();
    s.signal('SIGTERM');
    expect(await s.sup.untilStopped(() => {})).toBe(0);
    expect(events(s.db, 'stopped').map((e) => JSON.parse(e).reason)).toEqual(['SIGTERM']);
  });

  it('replaces nothing once a stop was asked for, and a signal during the start still ends in a clean stop', async () => {
    const s = supervised('nostop');
    const starting = s.sup.start();
    s.signal('SIGTERM');
    await starting;
    s.sup.daemon.emit('damaged', 'test: found damaged');
    const told: string[] = [];
    expect(await s.sup.untilStopped((sig) => told.push(sig))).toBe(0);
    expect(told).toEqual(['SIGTERM']);
    expect(s.made).toHaveLength(1);
    expect(events(s.db, 'stopped').map((e) => JSON.parse(e).reason)).toEqual(['SIGTERM']);
  });

  it('a second signal gives up waiting (exit 1)', async () => {
    const s = supervised('second');
    await s.sup.start();
    const stopped = s.sup.untilStopped(() => {});
    s.signal('SIGINT');
    s.signal('SIGINT');
    expect(await stopped).toBe(1);
    await s.sup.daemon.stop();
  });
});

describe('storage keeper', () => {
  it('reports a damaged database, counts the readings lost and writes them down', () => {
    const store = new Store(join(tmp.dir, 'keeper.db'));
    fill(store, 10, 10);
    const keeper = new StorageKeeper(store, { inFlightRange: () => undefined }, parseConfig({}).retention, silentLogger());
    const damaged: string[] = [];
    keeper.on('damaged', (reason) => damaged.push(reason));
    const real = store.appendTicks.bind(store);
    store.appendTicks = () => {
      throw Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' });
    };
    expect(() => keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(1), reading(2)] }])).toThrow(/malformed/);
    expect(damaged).toEqual(['database disk image is malformed']);
    expect(keeper.lostTotal()).toBe(2);
    expect(store.lossTotals()).toEqual({ lost: 2, dropped: 0 });
    expect(store.recentLog(10).filter((e) => e.event_type === 'readings_lost').map((e) => e.details)).toEqual([{ count: 2, error: 'SQLITE_CORRUPT' }]);
    store.appendTicks = real;
    const written: number[] = [];
    keeper.on('written', (n) => written.push(n));
    keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(3)] }]);
    expect(written).toEqual([1]);
    store.close();
  });

  it('under stop-sampling at the cap refuses readings with a typed error and records them as a dropped range', () => {
    const store = new Store(join(tmp.dir, 'full.db'));
    fill(store, 20_000, 5000);
    // the cap below what the rows themselves take (a WAL the guard can truncate would not do)
    store.db.pragma('wal_checkpoint(TRUNCATE)');
    const cap = Math.floor(store.fileBytes() * 0.8);
    const keeper = new StorageKeeper(store, { inFlightRange: () => undefined }, { ...parseConfig({}).retention, maxDatabaseBytes: cap, minFreeDiskBytes: 0, onFull: 'stop-sampling' }, silentLogger());
    const dropped: string[] = [];
    keeper.on('dropped', (when) => dropped.push(when));
    keeper.start(); // the first check finds the database at its cap
    keeper.stop();
    expect(keeper.acceptingReadings).toBe(false);
    expect(() => keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(1), reading(2), reading(3)] }])).toThrow(StorageFullError);
    expect(dropped).toEqual(['soon']);
    expect(store.unannouncedDrops()).toEqual([expect.objectContaining({ fromSeq: 20_001, toSeq: 20_003, count: 3, reason: 'storage full (stop-sampling)' })]);
    expect(keeper.lostTotal()).toBe(3);
    store.close();
  });
});
