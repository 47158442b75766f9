// The collector: a backlog queued at the broker for its persistent session(s), then drained into
// PostgreSQL by one collector, by two of one share group, by the reference loop (the same rows
// straight from memory) and by the naive design. Needs the machine's PostgreSQL (BENCH_PG_URL).
import mqtt from 'mqtt';
import pg from 'pg';
import { join } from 'node:path';
import { CLI, memMb, spawnNode, stopChild, waitFor, writeDaemonConfig, ROOT } from '../lib/util.mjs';
import { payload, plan } from '../lib/collect-data.mjs';

export const COLLECT_PREFIX = 'bench-collect';
const PG_URL = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const REF = (f) => join(ROOT, 'bench', 'reference', f);

async function pgQuery(url, text, values) {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** A database of the bench's own on the machine's cluster; returns its URL and a drop function. */
export async function benchDatabase() {
  const name = `esbench_collect_${process.pid}`;
  await pgQuery(PG_URL, `DROP DATABASE IF EXISTS ${name}`);
  await pgQuery(PG_URL, `CREATE DATABASE ${name}`);
  const u = new URL(PG_URL);
  u.pathname = `/${name}`;
  return { url: u.toString(), drop: () => pgQuery(PG_URL, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`) };
}

export async function pgAvailable() {
  try {
    await pgQuery(PG_URL, 'SELECT 1');
    return true;
  } catch {
    return false;
  }
}

const filters = (group) => ['readings', 'dropped'].map((k) => (group ? `$share/${group}/` : '') + `${COLLECT_PREFIX}/+/${k}`).concat(`${COLLECT_PREFIX}/+/status`);

/** Makes the persistent sessions exist (subscribed), so that the broker queues the backlog for them. */
async function makeSessions(url, clientIds, group) {
  for (const clientId of clientIds) {
    const c = mqtt.connect(url, { protocolVersion: 5, clientId, clean: false, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 });
    await new Promise((resolve, reject) => {
      c.once('connect', resolve);
      c.once('error', reject);
    });
    await c.subscribeAsync(filters(group), { qos: 1 });
    await c.endAsync();
  }
}

/** Publishes the whole backlog QoS 1 with a window of messages in flight. */
async function publishBacklog(url, shape) {
  const c = mqtt.connect(url, { protocolVersion: 5, clientId: `bench-fleet-${process.pid}`, reconnectPeriod: 0 });
  await new Promise((resolve, reject) => {
    c.once('connect', resolve);
    c.once('error', reject);
  });
  const it = plan(shape);
  let inFlight = 0;
  let failed;
  await new Promise((resolve) => {
    const pump = () => {
      for (;;) {
        if (failed) return resolve();
        if (inFlight >= 64) return;
        const next = it.next();
        if (next.done) return inFlight === 0 && resolve();
        const { d, first, count } = next.value;
        inFlight++;
        c.publish(`${COLLECT_PREFIX}/bench-dev-${String(d).padStart(4, '0')}/readings`, payload(d, first, count), { qos: 1 }, (err) => {
          inFlight--;
          if (err) failed = err;
          pump();
        });
      }
    };
    pump();
  });
  await c.endAsync();
  if (failed) throw failed;
}

// BENCH_COLLECT_CONFIG='{"batch":{"maxReadings":5000},"mqtt":{"receiveMaximum":50}}' tries other settings
const extra = JSON.parse(process.env.BENCH_COLLECT_CONFIG ?? '{}');

function collectorConfig(dir, { url, dbUrl, schema, clientId, group }) {
  return writeDaemonConfig(dir, {
    ...extra,
    mqtt: { url, topicPrefix: COLLECT_PREFIX, clientId, ...(group ? { shareGroup: group } : {}), ...extra.mqtt },
    postgres: { url: dbUrl, schema, ...extra.postgres },
    log: { level: 'warn' },
  }, `${clientId}.yaml`);
}

/** One connection for all the polling: a new one per poll would fork a backend ten times a second beside the collector. */
async function storedCounter(dbUrl, schema) {
  const c = new pg.Client({ connectionString: dbUrl, connectionTimeoutMillis: 3000 });
  await c.connect();
  return {
    count: async () => (await c.query(`SELECT coalesce(sum(readings_stored), 0)::float8 AS n FROM ${schema}.devices`).catch(() => ({ rows: [{ n: 0 }] }))).rows[0].n,
    end: () => c.end(),
  };
}

/**
 * One drain by `members` collectors (one: plain subscription; two: a share group): time from
 * their start, and from the first stored reading, until every reading of the backlog is stored.
 */
export async function collectorDrain(ctx, { members = 1, shape, tag = '', nodeFlags = [] }) {
  const n = shape.devices * shape.perDevice;
  const schema = `c${members}${tag}_${Date.now().toString(36)}`;
  const group = members > 1 ? `g${Date.now().toString(36)}` : undefined;
  const ids = Array.from({ length: members }, (_, i) => `bench-collector-${schema}-${i}`);
  await makeSessions(ctx.broker.url, ids, group);
  await publishBacklog(ctx.broker.url, shape);
  const counter = await storedCounter(ctx.pg.url, schema);
  const procs = ids.map((clientId) => spawnNode([CLI, 'collect', '--config', collectorConfig(ctx.workDir, { url: ctx.broker.url, dbUrl: ctx.pg.url, schema, clientId, group })], { nodeFlags }));
  const t0 = performance.now();
  let first;
  let peak = 0;
  const sampler = setInterval(() => {
    for (const p of procs) {
      try {
        const m = memMb(p.pid);
        peak = Math.max(peak, m.rss, m.hwm);
      } catch {
        /* exited */
      }
    }
  }, 100);
  try {
    await waitFor(async () => {
      for (const p of procs) if (p.child.exitCode !== null) throw new Error(`collector exited ${p.child.exitCode}: ${p.err().slice(-300)} ${p.out().slice(-1500)}`);
      const got = await counter.count();
      if (got > 0) first ??= performance.now();
      return got >= n;
    }, ctx.quick ? 300_000 : 900_000, `${n} readings stored by ${members} collector(s)`, 100);
  } finally {
    clearInterval(sampler);
    await counter.end();
  }
  const end = performance.now();
  for (const p of procs) await stopChild(p);
  const dups = (await pgQuery(ctx.pg.url, `SELECT count(*)::float8 - count(DISTINCT (device, seq))::float8 AS d, count(*)::float8 AS n FROM ${schema}.readings`))[0];
  await pgQuery(ctx.pg.url, `DROP SCHEMA ${schema} CASCADE`);
  if (dups.n !== n || dups.d !== 0) throw new Error(`collector stored ${dups.n} rows (${dups.d} twice) of ${n}`);
  return { rate: (n * 1000) / (end - t0), loopRate: (n * 1000) / (end - first), peakRssMb: peak, ms: end - t0 };
}

/** The reference loop: the same rows, the same batches, from memory. */
export async function rawInsert(ctx, { shape }) {
  const schema = `raw_${Date.now().toString(36)}`;
  const p = spawnNode([REF('collect-raw.mjs'), ctx.pg.url, schema, String(shape.devices), String(shape.perDevice), String(shape.batch)]);
  const r = await p.exited;
  await pgQuery(ctx.pg.url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  if (r.code !== 0) throw new Error(`collect-raw failed: ${p.err().slice(-500)}`);
  const { rows, ms } = JSON.parse(p.out().trim().split('\n').pop());
  if (rows !== shape.devices * shape.perDevice) throw new Error(`collect-raw stored ${rows} rows`);
  return (rows * 1000) / ms;
}

/** The naive design for a fixed time on a backlog of its own. */
export async function naiveCollect(ctx, { shape, durationMs }) {
  const schema = `naive_${Date.now().toString(36)}`;
  const clientId = `bench-naive-${schema}`;
  await makeSessions(ctx.broker.url, [clientId]);
  await publishBacklog(ctx.broker.url, shape);
  const p = spawnNode([REF('collect-naive.mjs'), ctx.pg.url, schema, ctx.broker.url, clientId, `${COLLECT_PREFIX}/+/readings`, String(durationMs)]);
  const r = await p.exited;
  await pgQuery(ctx.pg.url, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  // its session keeps the rest of the backlog: clear it so the broker lets it go
  const c = mqtt.connect(ctx.broker.url, { protocolVersion: 5, clientId, clean: true, reconnectPeriod: 0 });
  await new Promise((resolve) => c.once('connect', resolve));
  await c.endAsync();
  if (r.code !== 0) throw new Error(`collect-naive failed: ${p.err().slice(-500)}`);
  const { rows, ms } = JSON.parse(p.out().trim().split('\n').pop());
  return (rows * 1000) / ms;
}
