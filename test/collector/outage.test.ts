import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { Mosquitto } from '../helpers/mosquitto.js';
import { FaultProxy } from '../helpers/proxy.js';
import { sleep, spawnCli, TIME_SCALE, waitFor, type Spawned } from '../helpers/process.js';
import { PrivatePg, sql } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { AckTap, collectorConfig, FakeDevice, range, startCollector, stopCollector, killLeftovers, remember } from './helpers.js';

// PostgreSQL is stopped here: a cluster of the test's own, never the machine's
const tmp = makeTmp('es-out-');
let db: PrivatePg;
let mosq: Mosquitto;
beforeAll(async () => {
  db = await PrivatePg.start();
  mosq = await Mosquitto.start(join(tmp.dir, 'mosq'));
});
afterAll(async () => {
  await killLeftovers();
  await mosq?.stop();
  await db?.destroy();
  tmp.cleanup();
});

describe('collector and a PostgreSQL outage', () => {
  it('PostgreSQL stopped for 30 s: no PUBACK meanwhile; then it catches up, nothing lost, nothing twice', async ({ annotate }) => {
    const proxy = await new FaultProxy(mosq.port).listen();
    const tap = new AckTap().attach(proxy);
    const files = collectorConfig(tmp.dir, 'outage', { url: proxy.url, pgUrl: db.url, schema: 'outage', prefix: 'out' });
    const col = await startCollector(files);
    const dev = await FakeDevice.connect(mosq.url, 'pi-o', 'out');
    // a device sending 50 readings every 50 ms all along, through the outage
    let next = 1;
    let publishing = true;
    const pub = (async () => {
      while (publishing) {
        await dev.readings(range(next, next + 49));
        next += 50;
        await sleep(50);
      }
    })();
    const stored = async () => Number((await sql<{ n: string }>(db.url, 'SELECT count(*) AS n FROM outage.readings'))[0].n);
    await waitFor(async () => (await stored()) >= 500, 15_000, 'readings stored before the outage');

    db.stop('fast');
    await waitFor(() => col.logLines().some((l) => l.msg?.toString().startsWith('PostgreSQL unavailable')), 20_000, 'the collector noticing');
    const noticed = Number(col.logLines().find((l) => l.msg?.toString().startsWith('PostgreSQL unavailable'))!.time);
    const acksBefore = tap.acks.length;
    await sleep(30_000);
    const restarted = Date.now();
    await db.begin();
    await waitFor(() => col.logLines().some((l) => l.msg?.toString().startsWith('PostgreSQL answers again')), 40_000, 'the collector back');
    const back = Number(col.logLines().find((l) => l.msg?.toString().startsWith('PostgreSQL answers again'))!.time);
    const atReturn = next - 1 - (await stored());
    await sleep(1000);
    publishing = false;
    await pub;
    const published = next - 1;
    await waitFor(async () => (await stored()) === published, 30_000, `all ${published} readings stored`);
    const caughtUp = Date.now();

    // from the moment it knew, until the database came back, it acknowledged nothing
    expect(tap.acks.filter((a) => a.at > noticed && a.at < restarted)).toEqual([]);
    expect(tap.acks.length).toBeGreaterThan(acksBefore);
    expect(published).toBeGreaterThan(20_000);
    const rows = await sql<{ n: number; d: number; lo: number; hi: number }>(db.url, 'SELECT count(*)::int AS n, count(DISTINCT seq)::int AS d, min(seq)::int AS lo, max(seq)::int AS hi FROM outage.readings');
    expect(rows[0]).toEqual({ n: published, d: published, lo: 1, hi: published });
    expect(await sql(db.url, "SELECT from_seq, to_seq FROM outage.gaps WHERE state = 'open'")).toEqual([]);
    expect(col.child.exitCode).toBeNull();
    await annotate(`PostgreSQL down ${restarted - noticed} ms after the collector noticed; it reconnected ${back - restarted} ms after the database returned, ${atReturn} readings behind; all ${published} stored ${caughtUp - restarted} ms after the return (publishing went on 1 s longer)`);
    expect(await stopCollector(col)).toBe(0);
    await dev.end();
    await proxy.close();
  }, 150_000 * TIME_SCALE);

  it('PostgreSQL down at start: the collector waits for it (a SIGTERM meanwhile exits 0), then subscribes', async () => {
    db.stop('fast');
    const files = collectorConfig(tmp.dir, 'late', { url: mosq.url, pgUrl: db.url, schema: 'late', prefix: 'late' });
    const waiting = (p: Spawned) => p.logLines().some((l) => String(l.msg).startsWith('PostgreSQL unreachable'));
    const first = remember(spawnCli(['collect', ...files.args]));
    await waitFor(() => waiting(first), 15_000, 'the collector waiting for PostgreSQL');
    first.child.kill('SIGTERM');
    expect((await first.exited).code).toBe(0);
    const second = remember(spawnCli(['collect', ...files.args]));
    await waitFor(() => waiting(second), 15_000, 'waiting again');
    await db.begin();
    await waitFor(() => second.logLines().some((l) => l.msg === 'subscribed'), 40_000, 'subscribed once PostgreSQL is up');
    const dev = await FakeDevice.connect(mosq.url, 'pi-l', 'late');
    await dev.readings(range(1, 10));
    await waitFor(async () => (await sql<{ n: number }>(db.url, 'SELECT count(*)::int AS n FROM late.readings'))[0].n === 10, 10_000, 'stored');
    expect(await stopCollector(second)).toBe(0);
    await dev.end();
  }, 90_000 * TIME_SCALE);
});
