import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { EmbeddedBroker } from '../src/demo/embedded-broker.js';
import { encodeReadings, type WireBatch } from '../src/sync/payload.js';
import { FLAG_CLOCK_SUSPECT } from '../src/sensors/reading.js';
import { Mosquitto, mosquittoForTests } from './helpers/mosquitto.js';
import { FaultProxy } from './helpers/proxy.js';
import { Ledger } from './helpers/subscriber.js';
import { fill, makeStack, reading } from './helpers/stack.js';
import { makeTmp } from './helpers/tmp.js';
import { waitFor } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
const mosq = mosquittoForTests(join(tmp.dir, 'mosq'));

/** Counts the loop's looks for pending rows that found none, from now on. */
function countEmptyTakes(s: ReturnType<typeof makeStack>): () => number {
  let empty = 0;
  const take = s.store.takePending.bind(s.store);
  s.store.takePending = (limit, afterSeq) => {
    const rows = take(limit, afterSeq);
    if (rows.length === 0) empty++;
    return rows;
  };
  return () => empty;
}

const syncedCount = (s: ReturnType<typeof makeStack>) => s.store.db.prepare('SELECT count(*) FROM transactions WHERE synced = 1').pluck().get() as number;
const syncedIds = (s: ReturnType<typeof makeStack>) => s.store.db.prepare('SELECT id FROM transactions WHERE synced = 1').pluck().all() as string[];

describe('payload', () => {
  it('follows the public contract, with description and clock flag only when present', () => {
    const json = encodeReadings('pi-kitchen', 'b-1', [
      { id: 'i1', seq: 1, ts: '2026-11-26T10:00:00.123Z', sensor: 'sim-temp', value: 21.5, unit: '°C', description: null, flags: 0 },
      { id: 'i2', seq: 2, ts: '2026-11-26T10:00:00.124Z', sensor: 'manual', value: 12.5, unit: null, description: 'coffee', flags: FLAG_CLOCK_SUSPECT },
    ]);
    expect(JSON.parse(json)).toEqual({
      device: 'pi-kitchen',
      batch: 'b-1',
      readings: [
        { id: 'i1', seq: 1, ts: '2026-11-26T10:00:00.123Z', sensor: 'sim-temp', value: 21.5, unit: '°C' },
        { id: 'i2', seq: 2, ts: '2026-11-26T10:00:00.124Z', sensor: 'manual', value: 12.5, unit: null, description: 'coffee', clock: 'unsynced' },
      ],
    });
  });

  it('encodes a batch without descriptions or flags byte for byte like one that has them', () => {
    const row = { id: 'i1', seq: 1, ts: '2026-11-26T10:00:00.123Z', sensor: 'sim-temp', value: null, unit: '°C', description: null, flags: 0 };
    const manual = { ...row, id: 'i2', seq: 2, description: 'coffee' };
    const plain = encodeReadings('d', 'b', [row]);
    const mixed = encodeReadings('d', 'b', [row, manual]);
    expect(plain).toBe('{"device":"d","batch":"b","readings":[{"id":"i1","seq":1,"ts":"2026-11-26T10:00:00.123Z","sensor":"sim-temp","value":null,"unit":"°C"}]}');
    expect(mixed.startsWith(plain.slice(0, -2))).toBe(true);
  });
});

describe('sync against Mosquitto', () => {
  it('publishes pending rows as QoS 1 batches and marks them synced on PUBACK, in seq order', async () => {
    const s = makeStack({ dir: tmp.dir, url: mosq.url, name: 'basic' });
    const ledger = await Ledger.start(mosq.url, 't/basic/readings');
    fill(s.store, 1050, 50);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 15_000, 'all synced');
    await waitFor(() => ledger.unique === 1050, 5000, 'ledger complete');
    expect(syncedIds(s).every((id) => ledger.has(id))).toBe(true);
    for (const seqs of ledger.seqs) {
      expect(seqs.length).toBeLessThanOrEqual(100);
      for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBeGreaterThan(seqs[i - 1]);
    }
    expect(s.sync.stats.ackedRows).toBe(1050);
    // acknowledged batches are summed up in sync_log (one event per write at most, not one per batch)
    const ev = s.store.recentLog(100).filter((e) => e.event_type === 'batches_acked');
    expect(ev.length).toBeGreaterThanOrEqual(1);
    expect(ev.length).toBeLessThan(11);
    expect(ev.reduce((n, e) => n + (e.details as { rows: number }).rows, 0)).toBe(1050);
    expect(ev[0].details).toMatchObject({ firstSeq: 1 });
    expect(s.store.stats().syncedTotal).toBe(1050);
    await ledger.stop();
    await s.stop();
  });

  it('works with MQTT 3.1.1 too', async () => {
    const s = makeStack({ dir: tmp.dir, url: mosq.url, name: 'v311', protocolVersion: 4 });
    const ledger = await Ledger.start(mosq.url, 't/v311/readings', { protocolVersion: 4 });
    fill(s.store, 500);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 15_000, 'all synced');
    await waitFor(() => ledger.unique === 500, 5000, 'ledger');
    await ledger.stop();
    await s.stop();
  });

  it('drains a 100,000-row backlog completely with bounded memory', async () => {
    const s = makeStack({ dir: tmp.dir, url: mosq.url, name: 'backlog', sync: { batchSize: 500, maxInFlight: 8 } });
    const ledger = await Ledger.start(mosq.url, 't/backlog/readings');
    fill(s.store, 100_000, 5000);
    global.gc?.();
    // the JS heap and what lives outside it (Buffers: the encoded payloads)
    const used = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    const heapBefore = used();
    let heapPeak = heapBefore;
    const sampler = setInterval(() => (heapPeak = Math.max(heapPeak, used())), 20);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 60_000, 'backlog drained', 100);
    clearInterval(sampler);
    await waitFor(() => ledger.unique === 100_000, 15_000, 'ledger complete');
    expect(syncedCount(s)).toBe(100_000);
    // the loop holds at most the in-flight window in memory, never the backlog (~100 MB as objects)
    expect(heapPeak - heapBefore).toBeLessThan(60 * 1024 * 1024);
    for (const seqs of ledger.seqs) for (let i = 1; i < seqs.length; i++) expect(seqs[i]).toBe(seqs[i - 1] + 1);
    await ledger.stop();
    await s.stop();
  });

  it('parks rows the broker refuses (ACL deny under MQTT 5), after maxAttempts, deleting nothing', async () => {
    const acl = join(tmp.dir, 'acl');
    writeFileSync(acl, 'topic readwrite nothing/#\n');
    const denying = await Mosquitto.start(join(tmp.dir, 'mosq-acl'), [`acl_file ${acl}`]);
    const s = makeStack({ dir: tmp.dir, url: denying.url, name: 'denied', sync: { batchSize: 10, retry: { initialDelayMs: 20, maxDelayMs: 50, maxAttempts: 3 } } });
    fill(s.store, 25, 25);
    s.start();
    await waitFor(() => s.store.stats().parked === 25, 15_000, 'all parked');
    const rows = s.store.db.prepare('SELECT retry_count, reject_count, synced, parked_at FROM transactions').all() as Array<Record<string, unknown>>;
    expect(rows).toHaveLength(25);
    // this Mosquitto drops the connection after each refusal (see SyncLoop.window): a batch caught
    // in flight by that counts one unknown attempt, never more
    for (const r of rows) {
      expect(r).toMatchObject({ reject_count: 3, synced: 0 });
      expect(r.retry_count as number).toBeLessThanOrEqual(4);
    }
    expect(s.sync.stats.rejectedBatches).toBeGreaterThanOrEqual(9);
    const events = s.store.recentLog(100).map((e) => e.event_type);
    expect(events).toContain('batch_rejected');
    expect(events).toContain('rows_parked');
    const rej = s.store.recentLog(100).find((e) => e.event_type === 'batch_rejected')!;
    expect(rej.details).toMatchObject({ reasonCode: 135 }); // 0x87 Not authorized
    // parked rows are not retried: the loop looks for pending rows again and again and finds none
    const rejectedBefore = s.sync.stats.rejectedBatches;
    const emptyLooks = countEmptyTakes(s);
    await waitFor(() => emptyLooks() >= 3, 5000, 'three more looks for pending rows');
    expect(s.sync.stats.rejectedBatches).toBe(rejectedBefore);
    expect(s.store.requeue()).toBe(25);
    s.sync.rewind();
    await waitFor(() => s.sync.stats.rejectedBatches > rejectedBefore, 5000, 'retried after requeue');
    await s.stop();
    await denying.stop();
  });

  // A clean stop: Mosquitto killed with -9 can lose what it had just acknowledged (see
  // docs/durability.md: the fault suite measures that broker's loss apart from the daemon's)
  it('keeps rows pending while the broker is stopped and delivers everything after it restarts', async () => {
    const own = await Mosquitto.start(join(tmp.dir, 'mosq-restart'));
    const ledger = await Ledger.start(own.url, 't/restart/readings');
    const s = makeStack({ dir: tmp.dir, url: own.url, name: 'restart', sync: { batchSize: 200, publishTimeoutMs: 1000 } });
    s.start();
    let produced = 0;
    const producer = setInterval(() => {
      s.store.append(Array.from({ length: 200 }, (_, j) => reading(produced + j)));
      produced += 200;
    }, 20);
    await waitFor(() => s.sync.stats.ackedRows >= 2000, 10_000, 'rows flowing');
    await own.stop();
    await waitFor(() => !s.link.connected, 10_000, 'the link to notice');
    // the producer goes on: rows pile up while the broker is away
    const atStop = produced;
    await waitFor(() => produced >= atStop + 2000, 10_000, 'rows written while the broker is down');
    expect(s.store.countPending()).toBeGreaterThan(0);
    expect(s.link.connected).toBe(false);
    await own.start();
    await waitFor(() => s.link.connected, 15_000, 'reconnected');
    const atRestart = produced;
    await waitFor(() => produced >= atRestart + 2000, 10_000, 'rows written after the restart');
    clearInterval(producer);
    await waitFor(() => s.store.countPending() === 0, 20_000, 'drained after restart');
    const ids = syncedIds(s);
    expect(ids.length).toBe(produced);
    await waitFor(() => ids.every((id) => ledger.has(id)), 10_000, 'every synced id at the subscriber');
    await ledger.stop();
    await s.stop();
    await own.stop();
  });

  it('resends after a silent partition longer than the publish timeout; nothing lost, duplicates bounded by the window', async () => {
    const proxy = await new FaultProxy(mosq.port).listen();
    const ledger = await Ledger.start(mosq.url, 't/partition/readings');
    const s = makeStack({ dir: tmp.dir, url: proxy.url, name: 'partition', sync: { batchSize: 100, maxInFlight: 4, publishTimeoutMs: 500 } });
    fill(s.store, 20_000, 1000);
    s.start();
    await waitFor(() => s.sync.stats.ackedRows > 2000, 10_000, 'drain under way');
    proxy.pause();
    await waitFor(() => s.sync.stats.unknownBatches > 0, 10_000, 'a publish timeout');
    const retried = s.store.db.prepare('SELECT count(*) FROM transactions WHERE retry_count > 0').pluck().get() as number;
    expect(retried).toBeGreaterThan(0);
    proxy.resume();
    await waitFor(() => s.store.countPending() === 0, 30_000, 'drained after partition');
    await waitFor(() => ledger.unique === 20_000, 10_000, 'ledger');
    expect(syncedIds(s).every((id) => ledger.has(id))).toBe(true);
    // each fault can duplicate at most what was in flight (4 batches of 100)
    expect(ledger.duplicates).toBeLessThanOrEqual(400 * Math.max(1, s.sync.stats.unknownBatches));
    const events = s.store.recentLog(10_000).map((e) => e.event_type);
    expect(events).toContain('batch_timeout');
    await ledger.stop();
    await s.stop();
    await proxy.close();
  });

  it('a hard cut settles in-flight batches as unknown; mqtt.js does not resend them on its own', async () => {
    const broker = await new EmbeddedBroker().listen();
    let hold = true;
    let received = 0;
    broker.onPublish = (_c, p) => {
      if (p.topic.endsWith('/readings')) received++;
      return hold ? 'hold' : 'ack';
    };
    const proxy = await new FaultProxy(broker.port).listen();
    const s = makeStack({ dir: tmp.dir, url: proxy.url, name: 'cut', sync: { batchSize: 10, maxInFlight: 3 } });
    fill(s.store, 30, 30);
    s.start();
    await waitFor(() => broker.held.length === 3, 5000, 'three batches held');
    broker.held.splice(0); // these PUBACKs will never come
    hold = false;
    proxy.cut();
    await waitFor(() => s.sync.stats.unknownBatches === 3, 5000, 'three unknown outcomes');
    await waitFor(() => s.store.countPending() === 0, 10_000, 'resent and acked');
    // 3 batches before the cut + 3 resent by the loop: no third copy from mqtt.js's store
    expect(received).toBe(6);
    const retry = s.store.db.prepare('SELECT DISTINCT retry_count FROM transactions').pluck().all();
    expect(retry).toEqual([1]);
    await s.stop();
    await proxy.close();
    await broker.close();
  });
});

describe('sync against an in-process broker that controls PUBACKs', () => {
  it('marks nothing synced while PUBACKs are withheld, and everything once they come', async () => {
    const broker = await new EmbeddedBroker().listen();
    broker.onPublish = (_c, p) => (p.topic.endsWith('/readings') ? 'hold' : 'ack');
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'hold', sync: { batchSize: 10, maxInFlight: 2, publishTimeoutMs: 10_000 } });
    fill(s.store, 50, 50);
    s.start();
    await waitFor(() => broker.held.length === 2, 5000, 'window full');
    // ask for a round (it must not send past the window), then a publish of our own on the same
    // connection: once the broker has acknowledged it, it has everything the loop sent before it
    expect((await s.sync.syncNow(200)).ackedRows).toBe(0);
    await s.link.publish('t/hold/marker', 'm', {}, 5000);
    expect(syncedCount(s)).toBe(0);
    expect(broker.held.length).toBe(2); // no more than the window while nothing is acked
    broker.onPublish = () => 'ack';
    broker.releaseHeld();
    await waitFor(() => syncedCount(s) === 50, 5000, 'all synced');
    await s.stop();
    await broker.close();
  });

  it('never has more batches in flight than maxInFlight, nor than the broker Receive Maximum allows', async () => {
    for (const [receiveMaximum, maxInFlight, expected] of [
      [100, 4, 4],
      [3, 8, 2], // one slot of the broker's 3 is kept for the status message
    ]) {
      const broker = await new EmbeddedBroker({ receiveMaximum, ackDelayMs: 15 }).listen();
      const s = makeStack({ dir: tmp.dir, url: broker.url, name: `win${receiveMaximum}`, sync: { batchSize: 20, maxInFlight } });
      fill(s.store, 2000, 500);
      s.start();
      await waitFor(() => s.store.countPending() === 0, 20_000, 'drained');
      expect(broker.clients[0].maxUnacked).toBe(expected);
      expect(s.sync.stats.window).toBe(expected);
      await s.stop();
      await broker.close();
    }
  });

  it('the link never has more publishes awaiting PUBACK than the Receive Maximum, whoever publishes', async () => {
    // the sync loop keeps one slot for status; status, drop announcements and readings together
    // must still fit: a publish beyond the broker's limit waits for a slot instead of going out
    const broker = await new EmbeddedBroker({ receiveMaximum: 2 }).listen();
    broker.onPublish = () => 'hold';
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'rmlink' });
    s.link.start();
    await waitFor(() => s.link.connected, 5000, 'connected');
    const outcomes: string[] = [];
    const all = Array.from({ length: 5 }, (_, i) =>
      s.link.publish(`t/rmlink/${i < 2 ? 'readings' : 'status'}`, `m${i}`, {}, 10_000).then(
        () => outcomes.push(`ok ${i}`),
        (e: Error) => outcomes.push(`err ${i}: ${e.message}`),
      ),
    );
    await waitFor(() => broker.held.length === 2, 3000, 'two on the wire');
    expect(broker.clients[0].unacked).toBe(2); // the other three wait in the link, not at the broker (maxUnacked below: at no time)
    expect(s.link.inFlight).toBe(5);
    // each PUBACK lets exactly one more out, oldest first
    broker.held.shift()!.release();
    await waitFor(() => broker.held.length === 2, 3000, 'the third sent');
    expect(broker.clients[0].unacked).toBe(2);
    broker.onPublish = () => 'ack';
    for (const h of broker.held.splice(0)) h.release();
    await Promise.all(all);
    expect(outcomes.sort()).toEqual(['ok 0', 'ok 1', 'ok 2', 'ok 3', 'ok 4']);
    expect(broker.clients[0].maxUnacked).toBe(2);
    await s.link.stop();
    s.store.close();
    await broker.close();
  });

  it('a publish waiting for a slot times out like one on the wire (unknown), and the link starts over', async () => {
    const broker = await new EmbeddedBroker({ receiveMaximum: 1 }).listen();
    broker.onPublish = () => 'hold';
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'rmwait' });
    s.link.start();
    await waitFor(() => s.link.connected, 5000, 'connected');
    const first = s.link.publish('t/rmwait/a', 'a', {}, 5000).catch((e: Error) => e);
    const second = await s.link.publish('t/rmwait/b', 'b', {}, 300).catch((e: Error) => e);
    expect(second).toMatchObject({ name: 'PublishUnknownError', why: 'timeout' });
    expect(await first).toMatchObject({ name: 'PublishUnknownError' }); // connection dropped: unknown too
    expect(broker.clients[0].maxUnacked).toBe(1);
    await s.link.stop();
    s.store.close();
    await broker.close();
  });

  it('splits batches to stay under the broker Maximum Packet Size', async () => {
    const broker = await new EmbeddedBroker({ maximumPacketSize: 4000, ackDelayMs: 5 }).listen();
    broker.keepLog = true;
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'split', sync: { batchSize: 500, maxInFlight: 3 } });
    fill(s.store, 1000, 500);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 10_000, 'drained');
    const msgs = broker.log.filter((m) => m.topic.endsWith('/readings'));
    expect(msgs.length).toBeGreaterThan(2);
    for (const m of msgs) expect(m.payload.length).toBeLessThan(4000 - 64);
    const total = msgs.reduce((n, m) => n + (JSON.parse(m.payload.toString()) as WireBatch).readings.length, 0);
    expect(total).toBe(1000);
    // splitting never put more batches in flight than the window
    expect(broker.clients[0].maxUnacked).toBeLessThanOrEqual(3);
    // and the batches are as large as fits, not halves of halves
    expect(msgs.length).toBeLessThan(1000 / 20);
    await s.stop();
    await broker.close();
  });

  it('a PUBACK reason code >= 0x80 is a rejection; 0x10 (no subscribers) is success', async () => {
    const broker = await new EmbeddedBroker().listen();
    let code = 0x97; // quota exceeded
    broker.onPublish = () => (code ? { reasonCode: code } : 'ack');
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'rc', sync: { batchSize: 10, retry: { initialDelayMs: 10, maxDelayMs: 20, maxAttempts: 100 } } });
    fill(s.store, 10, 10);
    s.start();
    await waitFor(() => s.sync.stats.rejectedBatches >= 2, 5000, 'rejected twice');
    expect(syncedCount(s)).toBe(0);
    code = 0;
    broker.onPublish = () => ({ reasonCode: 0x10 });
    await waitFor(() => syncedCount(s) === 10, 5000, 'acked with 0x10');
    await s.stop();
    await broker.close();
  });

  it('acknowledgements that cannot be recorded (disk full) are held and retried, not resent', async () => {
    const broker = await new EmbeddedBroker().listen();
    let received = 0;
    broker.onPublish = (_c, p) => {
      if (p.topic.endsWith('/readings')) received++;
      return 'ack';
    };
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'full', sync: { batchSize: 100, maxInFlight: 4 } });
    fill(s.store, 2000, 500);
    const real = s.store.settleAcked.bind(s.store);
    let full = true;
    let failedWrites = 0;
    s.store.settleAcked = (batches, at) => {
      if (full) {
        failedWrites++;
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      }
      return real(batches, at);
    };
    s.start();
    await waitFor(() => received >= 4, 5000, 'first window sent');
    // each retry to write the acknowledgements down is a round in which the loop could have sent more
    await waitFor(() => failedWrites >= 3, 10_000, 'three tries to record the acknowledgements');
    // nothing recorded, and nothing more sent while the acknowledgements cannot be written down
    expect(received).toBe(4);
    expect(syncedCount(s)).toBe(0);
    full = false;
    await waitFor(() => syncedCount(s) === 2000, 10_000, 'all synced once space returns');
    expect(received).toBe(20); // every batch exactly once: no resend storm
    await s.stop();
    await broker.close();
  });

  it('gzip compression: the same JSON, announced with the MQTT 5 content type', async () => {
    const broker = await new EmbeddedBroker().listen();
    broker.keepLog = true;
    const s = makeStack({ dir: tmp.dir, url: broker.url, name: 'gz', sync: { compression: 'gzip' } });
    fill(s.store, 100, 100);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 5000, 'drained');
    const m = broker.log.find((x) => x.topic.endsWith('/readings'))!;
    expect(m.properties?.contentType).toBe('application/json+gzip');
    const batch = JSON.parse(gunzipSync(m.payload).toString()) as WireBatch;
    expect(batch.readings).toHaveLength(100);
    expect(batch.device).toBe('gz');
    await s.stop();
    await broker.close();
  });
});
