import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { EmbeddedBroker } from '../src/demo/embedded-broker.js';
import { Store } from '../src/store/store.js';
import { StorageKeeper } from '../src/store/keeper.js';
import { AckBook } from '../src/sync/ack-book.js';
import { SyncLoop } from '../src/sync/sync-loop.js';
import { MqttLink } from '../src/mqtt/link.js';
import { silentLogger } from '../src/util/logger.js';
import { fill, reading } from './helpers/stack.js';
import { makeTmp } from './helpers/tmp.js';
import { daemonConfig, sqlValue } from './helpers/daemon-config.js';
import { spawnCli, waitFor } from './helpers/process.js';
import { sendControl } from '../src/control/client.js';
import type { LiveStatus } from '../src/status/device-status.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

const retention = { syncedMaxAge: 86_400_000, pruneIntervalMs: 60_000, syncLogMaxRows: 10_000, maxDatabaseBytes: 0, minFreeDiskBytes: 0, onFull: 'drop-oldest' as const, checkIntervalMs: 60_000 };
const synced = (store: Store) => store.db.prepare('SELECT count(*) FROM transactions WHERE synced = 1').pluck().get() as number;

/** store → keeper (with the AckBook riding on its appends) → sync loop → a broker we control */
function chain(name: string, url: string, ackWriteDelayMs: number, store = new Store(join(tmp.dir, `${name}.db`)), batchSize = 100) {
  const retry = { initialDelayMs: 50, maxDelayMs: 200, maxAttempts: 3 };
  const link = new MqttLink({ url, protocolVersion: 5, clientId: `t-${name}-${Math.random().toString(36).slice(2, 8)}`, keepaliveSec: 5, connectTimeoutMs: 2000, sessionExpirySec: 0, retry }, silentLogger());
  const acks = new AckBook(store, { writeDelayMs: ackWriteDelayMs }, silentLogger());
  const opts = { deviceId: name, topic: `t/${name}/readings`, batchSize, maxInFlight: 4, intervalMs: 50, ackWriteDelayMs, publishTimeoutMs: 2000, compression: 'none' as const, protocolVersion: 5 as const, retry };
  const sync = new SyncLoop(store, link, opts, silentLogger(), Date.now, acks);
  const keeper = new StorageKeeper(store, sync, retention, silentLogger(), Date.now, acks);
  // what the daemon wires: the keeper's writes nudge the loop
  keeper.on('written', () => sync.nudge());
  let ownWrites = 0;
  const settle = store.settleAcked.bind(store);
  store.settleAcked = (w, at) => {
    ownWrites++;
    return settle(w, at);
  };
  return {
    store,
    sync,
    keeper,
    acks,
    ownWrites: () => ownWrites,
    start() {
      sync.start();
      link.start();
    },
    /** a crash: nothing is written on the way out */
    async crash() {
      sync.stop();
      await link.stop();
      store.close();
    },
    async stop() {
      await sync.drain(1000);
      sync.stop();
      await link.stop();
      store.close();
    },
  };
}

describe('acknowledged rows ride on the next append (AckBook)', () => {
  it('are marked synced in the transaction of the next append, not in one of their own', async () => {
    const broker = await new EmbeddedBroker().listen();
    // batches larger than the rows: a trickle, not a backlog (a drained backlog is written at once)
    const c = chain('ride', broker.url, 60_000, undefined, 1000);
    fill(c.store, 250, 50);
    c.start();
    await waitFor(() => c.sync.stats.ackedRows === 250, 5000, 'all acknowledged');
    // acknowledged, but not written down yet: the database still has them pending, status does not
    expect(synced(c.store)).toBe(0);
    expect(c.acks.waitingRows).toBe(250);
    c.keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(1)] }]);
    // the append's own transaction carried them
    expect(synced(c.store)).toBe(250);
    expect(c.ownWrites()).toBe(0);
    expect(c.acks.waitingRows).toBe(0);
    // the new reading is sent in turn (the write nudged the loop), and waits in the book
    await waitFor(() => c.sync.stats.ackedRows === 251, 5000, 'the new reading acknowledged');
    expect(synced(c.store)).toBe(250);
    await c.stop();
    await broker.close();
  });

  it('a drained backlog is written down at once, not after sync.ackWriteDelayMs', async () => {
    const broker = await new EmbeddedBroker().listen();
    const c = chain('backlog', broker.url, 600_000);
    fill(c.store, 300, 100);
    c.start();
    // full batches were taken (a backlog): once nothing is pending, one transaction of its own
    await waitFor(() => synced(c.store) === 300, 5000, 'the backlog written down without waiting 10 minutes');
    expect(c.ownWrites()).toBe(1);
    expect(c.acks.waitingRows).toBe(0);
    await c.stop();
    await broker.close();
  });

  it('are written alone once sync.ackWriteDelayMs passed without an append, with the counter and one summary event', async () => {
    const broker = await new EmbeddedBroker().listen();
    const c = chain('alone', broker.url, 300);
    fill(c.store, 300, 100);
    c.start();
    await waitFor(() => synced(c.store) === 300, 5000, 'written alone after the delay');
    expect(c.ownWrites()).toBeGreaterThanOrEqual(1);
    expect(c.store.stats().syncedTotal).toBe(300);
    const events = c.store.recentLog(100).filter((e) => e.event_type === 'batches_acked' || e.event_type === 'batch_acked');
    expect(events.length).toBeLessThanOrEqual(c.ownWrites());
    expect(events.reduce((n, e) => n + (e.details as { rows: number }).rows, 0)).toBe(300);
    await c.stop();
    await broker.close();
  });

  it('marks nothing synced before its PUBACK, whatever is appended meanwhile, and sends nothing twice', async () => {
    const broker = await new EmbeddedBroker().listen();
    let hold = true;
    const published: number[] = [];
    broker.onPublish = (_c, p) => {
      if (!p.topic.endsWith('/readings')) return 'ack';
      for (const r of JSON.parse(p.payload.toString()).readings as Array<{ seq: number }>) published.push(r.seq);
      return hold ? 'hold' : 'ack';
    };
    const c = chain('held', broker.url, 60_000);
    fill(c.store, 100, 100);
    c.start();
    await waitFor(() => published.length === 100, 5000, 'the batch sent');
    for (let i = 0; i < 5; i++) c.keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(i)] }]);
    await waitFor(() => published.length === 105, 5000, 'the new readings sent too');
    expect(synced(c.store)).toBe(0);
    expect(c.acks.waitingRows).toBe(0);
    hold = false;
    broker.releaseHeld();
    await waitFor(() => c.sync.stats.ackedRows === 105, 5000, 'all acknowledged once released');
    await c.stop();
    await broker.close();
  });

  it('a crash before the write loses nothing: the acknowledged rows are sent again after the restart', async () => {
    const broker = await new EmbeddedBroker().listen();
    const seen = new Map<number, number>();
    broker.onPublish = (_c, p) => {
      if (p.topic.endsWith('/readings')) for (const r of JSON.parse(p.payload.toString()).readings as Array<{ seq: number }>) seen.set(r.seq, (seen.get(r.seq) ?? 0) + 1);
      return 'ack';
    };
    const path = join(tmp.dir, 'crash.db');
    const a = chain('crash', broker.url, 60_000, new Store(path), 1000);
    fill(a.store, 200, 100);
    a.start();
    await waitFor(() => a.sync.stats.ackedRows === 200, 5000, 'all acknowledged');
    await a.crash();
    expect(sqlValue(path, 'SELECT count(*) FROM transactions WHERE synced = 0')).toBe(200);
    const b = chain('crash2', broker.url, 0, new Store(path));
    b.start();
    await waitFor(() => synced(b.store) === 200, 5000, 'synced after the restart');
    // every row reached the broker, those acknowledged before the crash twice: duplicates, no loss
    expect([...seen.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect([...seen.values()].every((n) => n === 2)).toBe(true);
    await b.stop();
    await broker.close();
  });

  it('the operator`s sync and a stop write them at once', async () => {
    const broker = await new EmbeddedBroker().listen();
    const c = chain('now', broker.url, 600_000);
    fill(c.store, 150, 50);
    c.start();
    const report = await c.sync.syncNow(5000);
    expect(report).toMatchObject({ ok: true, ackedRows: 150 });
    expect(synced(c.store)).toBe(150);
    expect(c.store.stats().syncedTotal).toBe(150);
    c.keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(1)] }]);
    await waitFor(() => c.acks.waitingRows === 1, 5000, 'the new reading acknowledged');
    await c.sync.drain(1000);
    expect(synced(c.store)).toBe(151);
    await c.stop();
    await broker.close();
  });
});

describe('wake-ups', () => {
  it('a round per write: the write nudges the loop, and an acknowledgement alone does not make it look again', async () => {
    const broker = await new EmbeddedBroker().listen();
    const c = chain('wake', broker.url, 60_000);
    c.start();
    await waitFor(() => c.sync.stats.window > 0, 5000, 'connected and looked once');
    let looks = 0;
    let empty = 0;
    const take = c.store.takePending.bind(c.store);
    c.store.takePending = (limit, afterSeq) => {
      const rows = take(limit, afterSeq);
      looks++;
      if (rows.length === 0) empty++;
      return rows;
    };
    for (let i = 1; i <= 5; i++) {
      c.keeper.appendTicks([{ tsMs: Date.now(), flags: 0, readings: [reading(i)] }]);
      await waitFor(() => c.sync.stats.ackedRows === i, 5000, `reading ${i} acknowledged`);
      // the loop's intervalMs (50 ms) between two rounds
      await waitFor(() => Date.now() - (c.sync.stats.lastAckAt ?? 0) > 60, 1000, 'the interval passed');
    }
    // one look per write, none of them empty (no polling, no look after each PUBACK)
    expect(looks).toBe(5);
    expect(empty).toBe(0);
    await c.stop();
    await broker.close();
  });
});

describe('commit window (database.commitWindowMs)', () => {
  it('holds readings in memory and commits them on SIGTERM, seq continuous', async () => {
    const c = daemonConfig(tmp.dir, 'window', {
      mqtt: { url: 'mqtt://127.0.0.1:1' },
      database: { path: join(tmp.dir, 'window.db'), commitWindowMs: 600_000 },
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 10 }],
    });
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => d.logLines().some((l) => l.msg === 'sampling started'), 10_000, 'sampling started');
    const db = new Database(c.db, { readonly: true });
    const rows = () => db.prepare('SELECT count(*) FROM transactions').pluck().get() as number;
    // the sampler counts what it hands to the keeper: three ticks of it held in the window
    await waitFor(async () => ((await sendControl(c.db + '.sock', 'status')) as LiveStatus).sampler!.written >= 30, 15_000, 'three ticks held');
    expect(rows()).toBe(0);
    d.child.kill('SIGTERM');
    const { code } = await d.exited;
    expect(code).toBe(0);
    const seqs = db.prepare('SELECT seq FROM transactions ORDER BY seq').pluck().all() as number[];
    db.close();
    expect(seqs.length).toBeGreaterThanOrEqual(30);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
    const stopped = d.logLines().find((l) => l.msg === 'stopped');
    expect(stopped?.written).toBe(seqs.length);
  });
});
