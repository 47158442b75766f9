import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Mosquitto } from '../helpers/mosquitto.js';
import { FaultProxy } from '../helpers/proxy.js';
import { daemonConfig, sqlValue } from '../helpers/daemon-config.js';
import { runCli, spawnCli, TIME_SCALE, waitFor } from '../helpers/process.js';
import { PrivatePg, sql } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { collectorConfig, startCollector, stopCollector, killLeftovers, remember } from './helpers.js';

// PostgreSQL is restarted here: a cluster of the test's own, never the machine's
const tmp = makeTmp('es-e2e-');
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

const SYNC = { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 3000, shutdownTimeoutMs: 1500, retry: { initialDelayMs: 200, maxDelayMs: 1000, maxAttempts: 50 } };

function daemon(name: string, prefix: string, url: string, count: number) {
  return daemonConfig(tmp.dir, name, {
    mqtt: { url, topicPrefix: prefix },
    sync: SYNC,
    status: { intervalMs: 1000 },
    sensors: count > 0 ? [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count }] : [],
    log: { level: count > 0 ? 'warn' : 'info' },
  });
}

const seqsOf = (file: string, where: string) => {
  const d = new Database(file, { readonly: true });
  try {
    return d.prepare(`SELECT seq FROM transactions WHERE ${where} ORDER BY seq`).pluck().all() as number[];
  } finally {
    d.close();
  }
};

describe('collector end to end', () => {
  it('three daemons; a broker restart, a collector SIGKILL and a PostgreSQL restart: every synced reading stored once, no open gap', async () => {
    const prefix = 'e2e';
    const files = collectorConfig(tmp.dir, 'e2e', { url: mosq.url, pgUrl: db.url, schema: 'e2e', prefix });
    let col = await startCollector(files);
    const names = ['pi-a', 'pi-b', 'pi-c'];
    const cfgs = names.map((n) => daemon(n, prefix, mosq.url, 150));
    const daemons = cfgs.map((c) => remember(spawnCli(['run', ...c.args])));
    const stored = async () => Number((await sql<{ n: string }>(db.url, 'SELECT coalesce(sum(readings_stored), 0) AS n FROM e2e.devices').catch(() => [{ n: '0' }]))[0].n);
    const grows = async (by: number, what: string) => {
      const from = await stored();
      await waitFor(async () => (await stored()) >= from + by, 30_000, what);
    };
    await grows(2000, 'readings stored');

    await mosq.stop();
    await mosq.start();
    await grows(2000, 'storing after the broker restart');

    col.child.kill('SIGKILL');
    await col.exited;
    col = await startCollector(files);
    await grows(2000, 'storing after the collector was killed and restarted');

    db.stop('fast');
    await db.begin();
    await grows(2000, 'storing after the PostgreSQL restart');

    // the daemons stop sampling, then send what they still hold (a restart without sensors)
    for (const d of daemons) d.child.kill('SIGTERM');
    for (const d of daemons) expect((await d.exited).code).toBe(0);
    const drains = names.map((n) => remember(spawnCli(['run', ...daemon(n, prefix, mosq.url, 0).args])));
    const dbs = cfgs.map((c) => c.db);
    await waitFor(() => drains.every((d) => d.logLines().some((l) => l.msg === 'connected to broker')), 20_000, 'the daemons back');
    await waitFor(() => dbs.every((f) => sqlValue(f, 'SELECT count(*) FROM transactions WHERE synced = 0') === 0), 30_000, 'nothing pending on any daemon');
    for (const d of drains) d.child.kill('SIGTERM');
    for (const d of drains) expect((await d.exited).code).toBe(0);

    const synced = dbs.map((f) => seqsOf(f, 'synced = 1'));
    const total = synced.reduce((n, s) => n + s.length, 0);
    await waitFor(async () => (await stored()) === total, 30_000, `all ${total} synced readings stored`);
    for (const [i, n] of names.entries()) {
      const rows = await sql<{ seq: number }>(db.url, 'SELECT seq::int FROM e2e.readings WHERE device = $1 ORDER BY seq', [n]);
      expect(rows.map((r) => r.seq)).toEqual(synced[i]);
      expect(seqsOf(dbs[i], '1 = 1')).toEqual(synced[i]);
    }
    expect(await sql(db.url, "SELECT device, from_seq, to_seq FROM e2e.gaps WHERE state = 'open'")).toEqual([]);
    const fleet = JSON.parse((await runCli(['fleet', ...files.args, '--json'])).stdout);
    expect(fleet.devices.map((d: { device: string; openGaps: { ranges: number }; state: string; pending: number }) => [d.device, d.openGaps.ranges, d.state, d.pending])).toEqual(names.map((n) => [n, 0, 'offline', 0]));
    expect(total).toBeGreaterThan(8000);
    expect(await stopCollector(col)).toBe(0);
  }, 180_000 * TIME_SCALE);

  it("a daemon's resend after SIGKILL (its PUBACKs still on the way) is stored once and counted as duplicates", async () => {
    const prefix = 'resend';
    const files = collectorConfig(tmp.dir, 'resend', { url: mosq.url, pgUrl: db.url, schema: 'resend', prefix });
    const col = await startCollector(files);
    // the daemon's link is slow: what it published reaches the collector before the broker's PUBACK reaches it
    const proxy = await new FaultProxy(mosq.port).listen();
    proxy.delayMs = 1500;
    const slow = daemon('pi-r', prefix, proxy.url, 50);
    const d = remember(spawnCli(['run', ...slow.args]));
    const storedSeqs = async () => new Set((await sql<{ seq: number }>(db.url, "SELECT seq::int FROM resend.readings WHERE device = 'pi-r'").catch(() => [])).map((r) => r.seq));
    // stored in PostgreSQL while the daemon still counts them pending
    await waitFor(async () => {
      const s = await storedSeqs();
      return seqsOf(slow.db, 'synced = 0').some((q) => s.has(q));
    }, 30_000, 'readings stored that the daemon has not seen acknowledged');
    d.child.kill('SIGKILL');
    await d.exited;
    await proxy.close();
    const again = remember(spawnCli(['run', ...daemon('pi-r', prefix, mosq.url, 0).args]));
    await waitFor(() => again.logLines().some((l) => l.msg === 'connected to broker'), 20_000, 'the daemon back');
    await waitFor(() => sqlValue(slow.db, 'SELECT count(*) FROM transactions WHERE synced = 0') === 0, 30_000, 'the resend acknowledged');
    again.child.kill('SIGTERM');
    expect((await again.exited).code).toBe(0);
    const all = seqsOf(slow.db, '1 = 1');
    await waitFor(async () => (await storedSeqs()).size === all.length, 20_000, 'every reading stored');
    const dev = (await sql<{ readings_stored: number; duplicates_absorbed: number }>(db.url, "SELECT readings_stored::int, duplicates_absorbed::int FROM resend.devices WHERE device = 'pi-r'"))[0];
    expect(dev.readings_stored).toBe(all.length);
    expect(dev.duplicates_absorbed).toBeGreaterThan(0);
    expect((await sql<{ n: number }>(db.url, 'SELECT count(*)::int AS n FROM resend.readings'))[0].n).toBe(all.length);
    expect(await stopCollector(col)).toBe(0);
  }, 120_000 * TIME_SCALE);
});

