import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { MqttLink } from '../src/mqtt/link.js';
import { Store } from '../src/store/store.js';
import { Confirmations } from '../src/store/confirmations.js';
import { Retention } from '../src/store/retention.js';
import { DropAnnouncer } from '../src/sync/drop-announcer.js';
import { EndToEnd } from '../src/sync/end-to-end.js';
import { silentLogger } from '../src/util/logger.js';
import { mosquittoForTests } from './helpers/mosquitto.js';
import { fill } from './helpers/stack.js';
import { makeTmp } from './helpers/tmp.js';
import { waitFor } from './helpers/process.js';

// The device's end of issue 16 with a real store, a real link and a real broker: what a `stored`
// message may and may not make the device do.

const tmp = makeTmp('es-e2e-dev-');
afterAll(tmp.cleanup);
const broker = mosquittoForTests(join(tmp.dir, 'mosq'));
const PREFIX = 'p';
let n = 0;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Device {
  store: Store;
  c: Confirmations;
  e2e: EndToEnd;
  rewinds: () => number;
  clock: { t: number };
  logs: Array<{ level: string; msg: string }>;
}

/** A device `dev` with `rows` readings synced at `syncedAtMs`, its end-to-end side listening. */
async function device(rows: number, o: { resendPerMinute?: number; syncedAtMs?: number } = {}): Promise<Device> {
  const store = new Store(join(tmp.dir, `d${++n}.db`));
  fill(store, rows, rows);
  store.markSynced(Array.from({ length: rows }, (_, i) => i + 1), o.syncedAtMs ?? Date.now());
  const link = new MqttLink(
    { url: broker.url, protocolVersion: 5, clientId: `e2e-dev-${n}`, keepaliveSec: 10, connectTimeoutMs: 3000, sessionExpirySec: 0, retry: { initialDelayMs: 50, maxDelayMs: 500 } },
    silentLogger(),
  );
  const c = new Confirmations(store);
  let rewinds = 0;
  const clock = { t: Date.now() };
  const logs: Device['logs'] = [];
  const log = silentLogger();
  for (const level of ['info', 'warn'] as const) log[level] = ((obj: unknown, msg?: string) => logs.push({ level, msg: msg ?? String(obj) })) as never;
  const announcer = new DropAnnouncer(store, link, { topic: `${PREFIX}/dev/dropped`, deviceId: 'dev', timeoutMs: 5000 }, silentLogger());
  const e2e = new EndToEnd(
    { store: c, link, sync: { rewind: () => rewinds++, stats: {} }, announcer },
    { topic: `${PREFIX}/dev/stored`, resendPerMinute: o.resendPerMinute ?? 100_000 },
    log,
    () => clock.t,
  );
  e2e.start();
  link.start();
  await waitFor(() => link.connected, 10_000, 'the device link');
  cleanups.push(async () => {
    e2e.stop();
    await link.stop();
    store.close();
  });
  return { store, c, e2e, rewinds: () => rewinds, clock, logs };
}

async function publisher(): Promise<mqtt.MqttClient> {
  const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: `e2e-col-${++n}` });
  cleanups.push(async () => {
    // retained answers are cleared so that the next test's device does not get them
    for (const d of ['dev', 'other']) await pub.publishAsync(`${PREFIX}/${d}/stored`, '', { qos: 1, retain: true });
    await pub.endAsync();
  });
  return pub;
}

const stored = (pub: mqtt.MqttClient, body: unknown, dev = 'dev') => pub.publishAsync(`${PREFIX}/${dev}/stored`, typeof body === 'string' ? body : JSON.stringify(body), { qos: 1, retain: true });
const pendingSeqs = (s: Store) => s.db.prepare('SELECT seq FROM transactions WHERE synced = 0 ORDER BY seq').pluck().all() as number[];
const events = (s: Store, type: string) => s.recentLog(1000).filter((e) => e.event_type === type);

describe('end to end: the device side', () => {
  it("acts on its own stored topic only; `through` is saved, and retention deletes synced rows only when old enough AND confirmed; a forged huge through deletes nothing early", async () => {
    const t0 = Date.now();
    const d = await device(100, { syncedAtMs: t0 });
    const pub = await publisher();
    // another device's answer first, then ours: the broker keeps their order, so ours arriving proves the other one passed
    await stored(pub, { through: 100, missing: [[1, 100]] }, 'other');
    await stored(pub, { through: 40, missing: [] });
    await waitFor(() => d.e2e.view().storedThrough === 40, 10_000, 'through saved');
    expect(d.e2e.stats.messages).toBe(1);
    expect(d.c.storedThrough()).toBe(40);
    expect(pendingSeqs(d.store)).toEqual([]);
    expect(d.e2e.view()).toEqual({ storedThrough: 40, syncedThrough: 100, unconfirmed: 60 });

    const hour = 3_600_000;
    const retention = new Retention(d.store, { syncedMaxAgeMs: hour, syncLogMaxRows: 1000, confirmedThrough: () => d.c.storedThrough() }, silentLogger());
    // young: nothing, confirmed or not
    expect(retention.run(t0 + hour / 2).syncedDeleted).toBe(0);
    // old: only what the collector confirmed
    expect(retention.run(t0 + 2 * hour).syncedDeleted).toBe(40);
    expect(d.store.minSeq()).toBe(41);

    // a forged `through` far beyond anything: still nothing younger than syncedMaxAge goes
    await stored(pub, { through: 1e15, missing: [] });
    await waitFor(() => d.e2e.view().storedThrough === 1e15, 10_000, 'the forged through');
    expect(retention.run(t0 + hour / 2).syncedDeleted).toBe(0);
    expect(d.store.minSeq()).toBe(41);
    // by age, as without end to end (the newest row always stays)
    expect(retention.run(t0 + 2 * hour).syncedDeleted).toBe(59);
  });

  it('missing: rows still here go back to pending (one sync_log event), rows gone are recorded as a drop and announced on /dropped', async () => {
    const d = await device(100);
    const watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
    cleanups.push(() => watcher.endAsync());
    const drops: Array<{ ranges: number[][]; reasons: string[] }> = [];
    watcher.on('message', (_t, p) => drops.push(JSON.parse(p.toString())));
    await watcher.subscribeAsync(`${PREFIX}/dev/dropped`, { qos: 1 });
    // rows 10-19 deleted (as retention or the disk cap would have), 30 still pending
    d.store.db.prepare('DELETE FROM transactions WHERE seq BETWEEN 10 AND 19').run();
    d.store.db.prepare('UPDATE transactions SET synced = 0 WHERE seq = 30').run();
    const syncedBefore = d.store.stats().syncedTotal;
    const pub = await publisher();
    await stored(pub, { through: 4, missing: [[5, 35], [150, 200]], ts: new Date().toISOString() });
    await waitFor(() => drops.length > 0, 10_000, 'the drop announcement');
    expect(pendingSeqs(d.store)).toEqual([5, 6, 7, 8, 9, ...Array.from({ length: 16 }, (_, i) => 20 + i)]);
    expect(d.e2e.stats.requeued).toBe(20);
    expect(d.store.stats().syncedTotal).toBe(syncedBefore - 20);
    expect(d.rewinds()).toBe(1);
    expect(drops).toEqual([expect.objectContaining({ ranges: [[10, 19]], reasons: ['asked for again, no longer on the device'] })]);
    // seqs the device never gave (150-200: above its last seq) are nobody's: ignored
    const ev = events(d.store, 'resend_requested');
    expect(ev).toHaveLength(1);
    expect(ev[0].details).toMatchObject({ from: 5, to: 35, requeued: 20, absent: [[10, 19]] });
    // the same request again at once (a `stored` computed before the resend arrived): not sent twice
    await stored(pub, { through: 4, missing: [[5, 35]] });
    await stored(pub, { through: 5, missing: [] });
    await waitFor(() => d.e2e.view().storedThrough === 5, 10_000, 'the next message');
    expect(d.e2e.stats.requeued).toBe(20);
    expect(events(d.store, 'resend_requested')).toHaveLength(1);
  });

  it('a storm of forged missing ranges is held to sync.resendPerMinute', async () => {
    const d = await device(5000, { resendPerMinute: 1000 });
    const pub = await publisher();
    for (let i = 0; i < 20; i++) await stored(pub, { through: 0, missing: [[i * 250 + 1, i * 250 + 250]] });
    await stored(pub, { through: 1, missing: [] });
    await waitFor(() => d.e2e.view().storedThrough === 1, 10_000, 'every message handled');
    expect(d.e2e.stats.messages).toBe(21);
    expect(d.e2e.stats.requeued).toBe(1000);
    expect(pendingSeqs(d.store)).toHaveLength(1000);
    expect(d.logs.filter((l) => l.level === 'warn')).toHaveLength(1);
    // half a minute later: half a minute's worth more, of the request still standing
    await stored(pub, { through: 1, missing: [[4001, 5000]] });
    await waitFor(() => d.e2e.stats.requeued > 1000 || d.e2e.stats.messages === 22, 10_000, 'the last request');
    d.clock.t += 30_000;
    await waitFor(() => d.e2e.stats.requeued === 1500, 10_000, 'the rest, at the limit');
    expect(pendingSeqs(d.store)).toHaveLength(1500);
  });

  it('a payload that is not a valid stored message is counted and ignored', async () => {
    const d = await device(10);
    const pub = await publisher();
    const bad = ['not json', '[]', '{"through":-1}', '{"through":1.5}', '{"through":"9"}', JSON.stringify({ through: 3, missing: [[5, 4]] }), JSON.stringify({ through: 3, missing: Array.from({ length: 1001 }, () => [1, 1]) }), 'x'.repeat(70_000)];
    for (const b of bad) await stored(pub, b);
    await stored(pub, { through: 2, missing: [] });
    await waitFor(() => d.e2e.view().storedThrough === 2, 10_000, 'the valid one');
    expect(d.e2e.stats).toMatchObject({ invalid: bad.length, messages: 1, requeued: 0 });
    expect(d.logs.filter((l) => l.level === 'warn')).toHaveLength(1);
  });
});
