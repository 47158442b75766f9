import { afterAll, beforeAll, describe, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { freePort, Mosquitto } from '../helpers/mosquitto.js';
import { NatsBroker } from '../helpers/nats.js';
import { PrivatePg, sql } from '../helpers/postgres.js';
import { spawnCli, type Spawned } from '../helpers/process.js';
import { makeTmp, writeConfig } from '../helpers/tmp.js';
import { fill } from '../helpers/stack.js';
import { Store } from '../../src/store/store.js';
import { backlog, CommitReader, DaemonProc, plan, Scenario, sleep, until } from './lib/harness.js';

// Issue 16: the broker-kill scenarios again, end to end. The daemon with sync.endToEnd, a collector
// and a PostgreSQL cluster of the scenario's own; the broker killed with SIGKILL under load, its
// persistence as it ships (Mosquitto saves every 30 minutes: a kill loses what it acknowledged).
// At the end every reading the daemon committed is in PostgreSQL or announced dropped, exactly.

const hasNats = (() => {
  try {
    execFileSync('nats-server', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const PLAN = plan({ runs: 4, faultsPerRun: 5 }, { runs: 1, faultsPerRun: 3 });
const DEVICE = 'e2e';
const PREFIX = 'faults-e2e';

let pg: PrivatePg;
beforeAll(async () => {
  pg = await PrivatePg.start();
}, 120_000);
afterAll(async () => {
  await pg?.destroy();
});

type Broker = { url: string; port: number; proc?: { kill(sig: NodeJS.Signals): boolean }; start(): Promise<void>; kill(): Promise<void>; stop(): Promise<void>; log(): string };

/** Mosquitto as Debian ships it: persistence on, saved every 30 minutes and at a clean stop. */
async function shippedMosquitto(dir: string): Promise<Mosquitto> {
  const m = new Mosquitto(dir, await freePort());
  writeFileSync(m.confPath, [`listener ${m.port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`, 'user root', ''].join('\n'));
  await m.start();
  return m;
}

interface Accounting {
  readings: number;
  stored: number;
  dropped: number;
  lost: number;
  unexpected: number;
  conflicts: number;
  duplicates: number;
  requeued: number;
  open: number;
}

/** Committed on the device versus PostgreSQL: stored (same id), inside a dropped gap, or lost. */
async function account(committed: Map<number, string>, db: string, schema: string): Promise<Accounting> {
  const rows = await sql<{ seq: number; id: string }>(pg.url, `SELECT seq::float8 AS seq, id::text AS id FROM ${schema}.readings WHERE device = $1`, [DEVICE]);
  const gaps = await sql<{ f: number; t: number; state: string }>(pg.url, `SELECT from_seq::float8 AS f, to_seq::float8 AS t, state FROM ${schema}.gaps WHERE device = $1 AND state <> 'filled'`, [DEVICE]);
  const dev = await sql<{ d: number }>(pg.url, `SELECT duplicates_absorbed::float8 AS d FROM ${schema}.devices WHERE device = $1`, [DEVICE]);
  const inPg = new Map(rows.map((r) => [r.seq, r.id]));
  const dropped = gaps.filter((g) => g.state === 'dropped');
  const a: Accounting = { readings: committed.size, stored: 0, dropped: 0, lost: 0, unexpected: 0, conflicts: 0, duplicates: dev[0]?.d ?? 0, requeued: 0, open: gaps.filter((g) => g.state === 'open').length };
  for (const [seq, id] of committed) {
    const got = inPg.get(seq);
    if (got === id) a.stored++;
    else if (got !== undefined) a.conflicts++;
    else if (dropped.some((g) => g.f <= seq && seq <= g.t)) a.dropped++;
    else a.lost++;
  }
  a.unexpected = [...inPg.keys()].filter((s) => !committed.has(s)).length;
  const d = new Database(db, { readonly: true });
  try {
    for (const details of d.prepare("SELECT details FROM sync_log WHERE event_type = 'resend_requested'").pluck().all() as string[]) a.requeued += Number(JSON.parse(details).requeued ?? 0);
  } finally {
    d.close();
  }
  return a;
}

async function e2eScenario(sc: Scenario, kind: 'mosquitto' | 'nats'): Promise<void> {
  const protocolVersion = kind === 'nats' ? 4 : 5;
  for (let i = 0; i < PLAN.runs; i++) {
    const tmp = makeTmp('esf-e2e-');
    const schema = `run_${i}_${Date.now() % 100000}`;
    const daemon = new DaemonProc();
    let broker: Broker | undefined;
    let collector: Spawned | undefined;
    const reader = new CommitReader(join(tmp.dir, 'db', 'f.db'));
    const failures: string[] = [];
    const runNo = sc.result.runs + 1;
    try {
      broker = kind === 'nats' ? await NatsBroker.start(join(tmp.dir, 'nats')) : await shippedMosquitto(join(tmp.dir, 'mosq'));
      const dbPath = join(tmp.dir, 'db', 'f.db');
      mkdirSync(join(tmp.dir, 'db'), { recursive: true });
      const store = new Store(dbPath, { create: true, synchronous: 'NORMAL' });
      fill(store, backlog(60_000), 5000);
      store.close();
      const colCfg = writeConfig(tmp.dir, {
        mqtt: { url: broker.url, topicPrefix: PREFIX, clientId: `esf-collector-${i}`, protocolVersion, keepaliveSec: 5, connectTimeoutMs: 2000 },
        postgres: { url: pg.url, schema, connectTimeoutMs: 3000 },
        gaps: { reorderWindowMs: 1000 },
        endToEnd: { intervalMs: 500, tailWindowMs: 5000, republishMs: 5000 },
        log: { level: 'info' },
      }, 'collector.yaml');
      const base = {
        device: { id: DEVICE },
        database: { path: dbPath },
        mqtt: { url: broker.url, topicPrefix: PREFIX, keepaliveSec: 5, connectTimeoutMs: 1000, protocolVersion },
        sync: { endToEnd: true, batchSize: 250, maxInFlight: 8, intervalMs: 100, publishTimeoutMs: 2000, shutdownTimeoutMs: 1000, retry: { initialDelayMs: 100, maxDelayMs: 1000, maxAttempts: 10 } },
        status: { intervalMs: 1000 },
        retention: { maxDatabaseBytes: 0, minFreeDiskBytes: 0 },
        log: { level: 'info' },
      };
      const runCfg = writeConfig(tmp.dir, { ...base, sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 1000 }] }, 'run.yaml');
      const drainCfg = writeConfig(tmp.dir, { ...base, sensors: [] }, 'drain.yaml');

      collector = spawnCli(['collect', '--config', colCfg]);
      const col = collector;
      await until(() => {
        if (col.child.exitCode !== null) throw new Error(`collector exited: ${col.stderr()}`);
        return col.logLines().some((l) => l.msg === 'subscribed');
      }, 30_000, 'collector subscribed');
      await daemon.start(runCfg, 'connected');
      reader.start();
      for (let f = 0; f < PLAN.faultsPerRun; f++) {
        await sleep(sc.rng.between(500, 2500));
        // half the time the collector is paused first, so that the broker holds a queue for it when it dies
        const pause = sc.rng.chance(0.5);
        if (pause) col.child.kill('SIGSTOP');
        if (pause) await sleep(sc.rng.between(500, 2000));
        await broker.kill();
        await sleep(sc.rng.between(0, 2000));
        await broker.start();
        if (pause) col.child.kill('SIGCONT');
        sc.result.faults++;
        sc.result.connectionLosses++;
        await daemon.linkUp(60_000);
      }
      const t = await daemon.term();
      if (t.code !== 0) failures.push(`SIGTERM: exit ${t.code ?? t.signal}`);
      // the rest without sampling: the backlog, and whatever the collector asks for again
      await daemon.start(drainCfg, 'connected');
      reader.pollAll();
      const committed = () => {
        reader.pollAll();
        return new Map([...reader.seen].map(([id, seq]) => [seq, id]));
      };
      let acc = await account(committed(), dbPath, schema);
      // resends are rate-limited and a lost tail is asked for only after endToEnd.tailWindowMs
      const end = Date.now() + 240_000;
      while (Date.now() < end) {
        acc = await account(committed(), dbPath, schema);
        if (acc.lost === 0 && reader.pending() === 0) break;
        await sleep(1000);
      }
      const t2 = await daemon.term();
      if (t2.code !== 0) failures.push(`drain daemon SIGTERM: exit ${t2.code ?? t2.signal}`);
      acc = await account(committed(), dbPath, schema);
      const r = sc.result;
      r.runs++;
      r.readings += acc.readings;
      r.lost += acc.lost;
      r.unexpected += acc.unexpected;
      r.duplicates += acc.duplicates;
      r.resent += acc.requeued;
      if (acc.requeued > 0) r.faultsWithResend++;
      if (acc.conflicts > 0) failures.push(`${acc.conflicts} seqs stored in PostgreSQL under another id`);
      if (acc.open > 0) failures.push(`${acc.open} gaps still open in PostgreSQL`);
      if (acc.lost > 0) failures.push(`${acc.lost} committed readings neither in PostgreSQL nor announced dropped`);
      console.log(`[${r.scenario}] run ${runNo}: ${acc.readings} readings committed = ${acc.stored} in PostgreSQL + ${acc.dropped} announced dropped + ${acc.lost} lost; ${acc.requeued} sent again on the collector's request; ${acc.duplicates} duplicates absorbed; ${acc.unexpected} unexpected`);
      sc.note(`run ${runNo}: ${acc.readings} committed = ${acc.stored} in PostgreSQL + ${acc.dropped} announced dropped; ${acc.requeued} readings sent again on the collector's request (lost by the broker after its PUBACK, or not yet stored when asked)`);
    } catch (err) {
      failures.push((err as Error).message);
      console.log(`[${sc.result.scenario}] run ${runNo} failed: ${(err as Error).stack}\n${daemon.dump().slice(-4000)}\n--- collector:\n${collector?.stdout().slice(-4000)}`);
    } finally {
      for (const f of failures) sc.fail(`run ${runNo}: ${f}`);
      reader.close();
      await daemon.kill9().catch(() => {});
      if (collector && collector.child.exitCode === null) {
        collector.child.kill('SIGCONT');
        collector.child.kill('SIGTERM');
        await Promise.race([collector.exited, sleep(10_000)]);
        collector.child.kill('SIGKILL');
      }
      await broker?.stop().catch(() => {});
      tmp.cleanup();
    }
  }
  sc.finish();
}

describe('fault: the broker is killed, end to end (sync.endToEnd, collector, PostgreSQL)', () => {
  it('broker-kill-e2e: Mosquitto as shipped killed (-9) under load; every committed reading in PostgreSQL or announced dropped', async () => {
    await e2eScenario(new Scenario('broker-kill-e2e', 'Mosquitto with shipped persistence kill -9 under load (sampling 1000/s over a backlog; half the kills with the collector paused first), restarted after 0-2 s; daemon with sync.endToEnd, collector into PostgreSQL'), 'mosquitto');
  });

  it.skipIf(!hasNats)('broker-kill-e2e-nats: NATS (JetStream) killed (-9) under load; every committed reading in PostgreSQL or announced dropped', async () => {
    await e2eScenario(new Scenario('broker-kill-e2e-nats', 'NATS server with JetStream (MQTT 3.1.1) kill -9 under load, as broker-kill-e2e'), 'nats');
  });
});
