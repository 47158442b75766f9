import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Mosquitto } from '../helpers/mosquitto.js';
import { FaultProxy } from '../helpers/proxy.js';
import { sleep, TIME_SCALE, waitFor, type Spawned } from '../helpers/process.js';
import { testSchema } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { AckTap, collectorConfig, FakeDevice, range, startCollector, stopCollector, type CollectorFiles, killLeftovers } from './helpers.js';

const tmp = makeTmp('es-share-');
let mosq: Mosquitto;
beforeAll(async () => {
  mosq = await Mosquitto.start(join(tmp.dir, 'mosq'));
});
afterAll(async () => {
  await killLeftovers();
  await mosq?.stop();
  tmp.cleanup();
});
const after: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of after.splice(0).reverse()) await f().catch(() => {});
});

// as systemd's RestartSec would bring a killed member back
const RESTART_AFTER_MS = 3000;

describe('collectors in one share group', () => {
  it('split the fleet; one killed with SIGKILL loses nothing: its share waits for it to come back (mosquitto#2662)', async ({ annotate }) => {
    const s = await testSchema('share');
    after.push(s.cleanup);
    const prefix = 'share';
    const members: Array<{ files: CollectorFiles; proxy: FaultProxy; tap: AckTap; proc?: Spawned }> = [];
    for (const name of ['a', 'b']) {
      const proxy = await new FaultProxy(mosq.port).listen();
      const tap = new AckTap().attach(proxy);
      members.push({ files: collectorConfig(tmp.dir, `share-${name}`, { url: proxy.url, pgUrl: s.url, schema: s.schema, prefix, shareGroup: 'g' }), proxy, tap });
    }
    const [a, b] = members;
    a.proc = await startCollector(a.files);
    b.proc = await startCollector(b.files);
    const devices = await Promise.all(['d1', 'd2', 'd3', 'd4'].map((n) => FakeDevice.connect(mosq.url, n, prefix)));
    const stored = async () => Number((await s.q<{ n: string }>('SELECT count(*) AS n FROM readings'))[0].n);
    const publish = (from: number, to: number) => Promise.all(devices.map(async (d) => {
      for (let seq = from; seq <= to; seq += 20) await d.readings(range(seq, seq + 19));
    }));

    await publish(1, 500);
    await waitFor(async () => (await stored()) === 2000, 20_000, 'the first 2000 readings');
    // both members took a share
    expect(a.tap.acks.length).toBeGreaterThan(10);
    expect(b.tap.acks.length).toBeGreaterThan(10);

    // B dies in the middle of the stream
    const second = publish(501, 1500);
    const bBefore = b.tap.delivered.length;
    await waitFor(() => b.tap.delivered.length >= bBefore + 5, 10_000, 'B receiving the second part');
    b.proc.child.kill('SIGKILL');
    const killedAt = Date.now();
    await b.proc.exited;
    const bDeliveredBeforeKill = b.tap.delivered.length;
    await second;
    const publishedAt = Date.now();
    await sleep(Math.max(0, killedAt + RESTART_AFTER_MS - Date.now()));
    b.proc = await startCollector(b.files);
    const restartedAt = Date.now();
    await waitFor(async () => (await stored()) === 6000, 30_000, 'all 6000 readings');
    const doneAt = Date.now();

    // what B got after its return was held for it while it was away: the broker gave it to nobody else
    const heldForB = b.tap.delivered.slice(bDeliveredBeforeKill);
    expect(heldForB.length).toBeGreaterThan(0);
    const aTopics = new Set(a.tap.delivered.filter((m) => m.at > killedAt).map((m) => m.payload.toString()));
    expect(heldForB.filter((m) => aTopics.has(m.payload.toString()))).toEqual([]);
    const rows = (await s.q<{ n: number; d: number }>('SELECT count(*)::int AS n, count(DISTINCT (device, seq))::int AS d FROM readings'))[0];
    expect(rows).toEqual({ n: 6000, d: 6000 });
    expect(await s.q("SELECT device, from_seq, to_seq FROM gaps WHERE state = 'open'")).toEqual([]);
    await annotate(
      `mosquitto#2662: ${heldForB.length} messages waited for the killed member; last reading stored ${doneAt - killedAt} ms after the kill ` +
        `(${doneAt - restartedAt} ms after it came back ${restartedAt - killedAt} ms after the kill; publishing ended ${publishedAt - killedAt} ms after the kill)`,
    );
    for (const m of members) {
      await stopCollector(m.proc!);
      await m.proxy.close();
    }
    for (const d of devices) await d.end();
  }, 90_000 * TIME_SCALE);

  it('a member receives again after a clean broker restart (Mosquitto restores a $share subscription without delivering to it)', async () => {
    const s = await testSchema('share_restart');
    after.push(s.cleanup);
    const files = collectorConfig(tmp.dir, 'share-restart', { url: mosq.url, pgUrl: s.url, schema: s.schema, prefix: 'shr', shareGroup: 'r' });
    const col = await startCollector(files);
    const dev = await FakeDevice.connect(mosq.url, 'd1', 'shr');
    const stored = async () => Number((await s.q<{ n: string }>('SELECT count(*) AS n FROM readings'))[0].n);
    await dev.readings(range(1, 100));
    await waitFor(async () => (await stored()) === 100, 10_000, 'stored before the restart');
    await mosq.stop();
    await mosq.start();
    await waitFor(() => col.logLines().filter((l) => l.msg === 'subscribed').length === 2, 20_000, 'subscribed again');
    expect(col.logLines().filter((l) => l.msg === 'subscribed')[1]).toMatchObject({ sessionPresent: true });
    await dev.readings(range(101, 200));
    await waitFor(async () => (await stored()) === 200, 15_000, 'stored after the restart');
    expect(await stopCollector(col)).toBe(0);
    await dev.end();
  }, 60_000 * TIME_SCALE);
});
