// Backlog drain: the daemon against the reference loop, the link's limit and the naive design,
// each on a fresh copy of the same database of pending readings, same broker, same subscriber.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { copyDb } from '../lib/backlog.mjs';
import { daemonConfig, startDaemon, readingsTopic, TOPIC_PREFIX } from '../lib/daemon.mjs';
import { ROOT, cpuUs, memMb, spawnNode, stopChild, waitFor, sleep } from '../lib/util.mjs';

const REF = (f) => join(ROOT, 'bench', 'reference', f);

/** true once no pending row is left (through the partial index: cheap even with 1M rows) */
function allSynced(dbPath) {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    return db.prepare('SELECT 1 FROM transactions WHERE synced = 0 AND parked_at IS NULL LIMIT 1').get() === undefined;
  } finally {
    db.close();
  }
}

/**
 * One timed drain: starts the contender, waits until the subscriber saw every reading and the
 * database shows nothing pending. Time runs from spawn (or from the contender's "ready" line).
 */
async function timedDrain({ ctx, n, start, fromReady = false, checkDb = true, sample }) {
  const got = ctx.counter.expectReadings(n);
  const proc = start();
  let t0 = proc.spawnedAt;
  if (fromReady) {
    await waitFor(() => proc.out().includes('ready') || proc.child.exitCode !== null, 600_000, 'ready line', 5);
    t0 = performance.now();
  }
  let peak = { rss: 0, hwm: 0 };
  let cpu = 0;
  const sampler = setInterval(() => {
    try {
      const m = memMb(proc.pid);
      peak = { rss: Math.max(peak.rss, m.rss), hwm: Math.max(peak.hwm, m.hwm) };
      cpu = cpuUs(proc.pid);
    } catch {
      /* exited */
    }
  }, 100);
  const limitMs = ctx.quick ? 120_000 : 600_000;
  const timeout = new Promise((r) => setTimeout(() => r('timeout'), limitMs).unref());
  // the reference loops exit once their last PUBACK is in: the subscriber may still be receiving
  const exited = proc.exited.then((r) => (r.code === 0 ? got : { exited: r }));
  const first = await Promise.race([got, timeout, exited]);
  if (first === 'timeout' || first?.exited) {
    clearInterval(sampler);
    await stopChild(proc);
    throw new Error(`drain did not finish: ${ctx.counter.unique}/${n} readings arrived; exit ${JSON.stringify(first?.exited)}; ${proc.err().slice(-500)} ${proc.out().slice(-1500)}`);
  }
  let end = ctx.counter.doneAt;
  if (checkDb) {
    await waitFor(() => allSynced(sample.db), 60_000, 'every row marked synced', 5);
    end = Math.max(end, performance.now());
  }
  clearInterval(sampler);
  try {
    const m = memMb(proc.pid);
    peak = { rss: Math.max(peak.rss, m.rss), hwm: Math.max(peak.hwm, m.hwm) };
    cpu = cpuUs(proc.pid);
  } catch {
    /* already exited (the reference loops end by themselves) */
  }
  await stopChild(proc);
  const ms = end - t0;
  // the same drain with each contender's start-up left out: from the first reading at the subscriber
  const loopRate = (n * 1000) / (end - ctx.counter.firstAt);
  return { ms, rate: (n * 1000) / ms, loopRate, peakRssMb: Math.max(peak.rss, peak.hwm), cpuUs: cpu, duplicates: ctx.counter.duplicates, messages: ctx.counter.messages, err: proc.err().slice(-2000) };
}

export async function drainContender(ctx, kind, { pin, nodeFlags = [], backlog = ctx.backlog, n = ctx.n, tag = '' } = {}) {
  const dir = ctx.workDir;
  const db = join(dir, `drain-${kind}${tag}.db`);
  copyDb(backlog, db);
  const device = `drain-${kind}`;
  const topic = `${TOPIC_PREFIX}/${device}/readings`;
  try {
    switch (kind) {
      case 'daemon': {
        const cfg = daemonConfig(dir, { db, url: ctx.broker.url, device, sensors: [] });
        return await timedDrain({ ctx, n, sample: { db }, start: () => startDaemon(cfg, { pin, nodeFlags }) });
      }
      case 'raw':
        return await timedDrain({ ctx, n, sample: { db }, start: () => spawnNode([REF('drain-loop.mjs'), db, ctx.broker.url, topic, device, '500', '8'], { pin, nodeFlags }) });
      case 'link':
        return await timedDrain({ ctx, n, sample: { db }, fromReady: true, checkDb: false, start: () => spawnNode([REF('link-only.mjs'), db, ctx.broker.url, topic, device, '500', '8'], { pin, nodeFlags }) });
      default:
        throw new Error(kind);
    }
  } finally {
    for (const s of ['', '-wal', '-shm', '.sock']) rmSync(db + s, { force: true });
  }
}

/** The naive design on the same backlog, for a fixed time (it is slow): readings marked per second. */
export async function naiveDrain(ctx, { durationMs, pin }) {
  const db = join(ctx.workDir, 'drain-naive.db');
  copyDb(ctx.backlog, db);
  const device = 'drain-naive';
  ctx.counter.expectReadings(Infinity);
  const p = spawnNode([REF('naive-drain.mjs'), db, ctx.broker.url, `${TOPIC_PREFIX}/${device}/readings`, device, String(durationMs)], { pin });
  const r = await p.exited;
  if (r.code !== 0) throw new Error(`naive drain failed: ${p.err().slice(-500)}`);
  const { marked, ms } = JSON.parse(p.out().trim().split('\n').pop());
  await sleep(200);
  const arrived = ctx.counter.unique;
  for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  if (arrived < marked) throw new Error(`naive drain: ${marked} marked but ${arrived} arrived`);
  return { rate: (marked * 1000) / ms, marked, ms };
}

export { readingsTopic };
