#!/usr/bin/env node
// npm run bench [-- --quick] [-- --json FILE] [-- --profile DIR] [-- --only ingest,drain,...] [-- --docs]
//   (fleetpage: BENCH_FLEET=full for the full size, BENCH_FLEET_REUSE=1 to keep using a generated database)
// Runs every scenario against its limit in one run and prints a table; see docs/benchmarks.md.
import { cpus } from 'node:os';
import { readFileSync, rmSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startBroker } from './lib/broker.mjs';
import { ReadingCounter } from './lib/counter.mjs';
import { buildBacklog } from './lib/backlog.mjs';
import { readingsTopic, daemonNodeFlags } from './lib/daemon.mjs';
import { CLI, ROOT, loadAvg, spawnNode, summarize, tmpDir } from './lib/util.mjs';
import { drainContender, naiveDrain } from './scenarios/drain.mjs';
import { startupOnce } from './scenarios/startup.mjs';
import { wireOnce } from './scenarios/wire.mjs';
import { steadyPhase, collectdAvailable } from './scenarios/steady.mjs';
import { linkAvailable, linkDrain } from './scenarios/link.mjs';
import { liveOnce } from './scenarios/live.mjs';
import { benchDatabase, collectorDrain, naiveCollect, pgAvailable, rawInsert } from './scenarios/collect.mjs';
import { dropFleetDatabase, fleetPageBench } from './scenarios/fleetpage.mjs';
import { DEFAULT as FLEET_DEFAULT, FULL as FLEET_FULL, QUICK as FLEET_QUICK } from './lib/fleet-data.mjs';

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    json: { type: 'string' },
    profile: { type: 'string' },
    only: { type: 'string' },
    reps: { type: 'string' },
    link: { type: 'boolean' },
    keep: { type: 'boolean', default: false },
    // --docs writes the table into docs/benchmarks.md; --readme is its old name
    docs: { type: 'boolean', default: false },
    readme: { type: 'boolean', default: false },
  },
});
if (!existsSync(CLI)) {
  console.error('dist/ is missing: run npm run build first (npm run bench does)');
  process.exit(1);
}

const quick = args.quick;
const REPS = Number(args.reps ?? 3);
const only = args.only ? new Set(args.only.split(',')) : undefined;
const want = (s) => !only || only.has(s);
const P = quick
  ? { backlog: 200_000, wire: 10_000, ingestRows: 100_000, ingestTx: [100], naiveMs: 1500, steadyWarmMs: 8000, steadyMs: 12_000, pinnedDrain: false, link: false, linkN: 2000 }
  : { backlog: 1_000_000, wire: 50_000, ingestRows: 200_000, ingestTx: [1, 10, 100, 1000], naiveMs: 5000, steadyWarmMs: 30_000, steadyMs: 180_000, pinnedDrain: true, link: true, linkN: 10_000 };
if (args.link !== undefined) P.link = args.link;
// short steady windows while developing (disk bytes do not depend on the machine's load; CPU does)
if (process.env.BENCH_STEADY_MS) P.steadyMs = Number(process.env.BENCH_STEADY_MS);
if (process.env.BENCH_STEADY_WARM_MS) P.steadyWarmMs = Number(process.env.BENCH_STEADY_WARM_MS);
// the collector: devices × perDevice readings in messages of `batch` (the daemon's default batch size)
P.collect = quick ? { devices: 20, perDevice: 5000, batch: 500, naivePerDevice: 500, naiveMs: 3000 } : { devices: 100, perDevice: 10_000, batch: 500, naivePerDevice: 1000, naiveMs: 10_000 };
/** the default sensors sample 0.3 readings/s (sim-temp every 5 s, cpu-load every 10 s) */
const DEFAULT_RATE = 0.3;

const log = (...a) => console.error(new Date().toISOString().slice(11, 19), ...a);
const loads = [];
const loadTimer = setInterval(() => loads.push(loadAvg()[0]), 5000);
loads.push(loadAvg()[0]);
const started = Date.now();

const workDir = tmpDir('esbench-');
const profileDir = args.profile ? resolve(args.profile) : undefined;
if (profileDir) mkdirSync(profileDir, { recursive: true });
const profFlags = (name) => (profileDir ? ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${name}-${Date.now()}.cpuprofile`] : []);

const R = {
  machine: {
    cpu: /model name\s*:\s*(.*)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    quick,
    repetitions: REPS,
    broker: 'Mosquitto (private, persistence off)',
    daemon_node_flags: daemonNodeFlags().join(' '),
  },
};
const targets = [];

/** section[key] = median; runs/min/max beside it */
function put(section, key, s) {
  const o = (R[section] ??= {});
  o[key] = s.median;
  ((o.runs ??= {})[key] = s.runs), ((o.min ??= {})[key] = s.min), ((o.max ??= {})[key] = s.max);
}
/** a target is met only by a figure that was measured (a NaN or a missing one never passes) */
const atMost = (v, x) => typeof v === 'number' && Number.isFinite(v) && v <= x;
const round = (v, d = 1) => (typeof v === 'number' ? Math.round(v * 10 ** d) / 10 ** d : v);

async function repeat(n, fns) {
  const out = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
  // interleaved, the order reversed every other round: every contender sees the same noise of a
  // shared machine, and none always goes first
  for (let i = 0; i < n; i++) {
    const order = Object.entries(fns);
    if (i % 2 === 1) order.reverse();
    for (const [k, fn] of order) out[k].push(await fn(i));
  }
  return out;
}

async function ingestOnce(mode, tx, rows, pin) {
  const db = join(workDir, `ingest-${mode}.db`);
  for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  // the daemon's side runs with the daemon's node flags, the bare one with none
  const flags = [...(mode === 'daemon' ? daemonNodeFlags() : []), ...profFlags(`ingest-${mode}`)];
  const p = spawnNode([join(ROOT, 'bench/scenarios/ingest-worker.mjs'), mode, db, String(rows), String(tx)], { nodeFlags: flags, pin });
  const r = await p.exited;
  if (r.code !== 0) throw new Error(`ingest ${mode} failed: ${p.err()}`);
  const { rows: written, ms } = JSON.parse(p.out().trim().split('\n').pop());
  for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  return (written * 1000) / ms;
}

let broker;
let counter;
try {
  broker = await startBroker(join(workDir, 'broker'));
  counter = await ReadingCounter.start(broker.url, readingsTopic(), P.backlog);
  const ctx = { workDir, broker, counter, quick, n: P.backlog };

  if (want('ingest')) {
    log('ingest');
    R.ingest = { by_tx: {} };
    for (const tx of P.ingestTx) {
      const rows = tx === 1 ? P.ingestRows / 50 : tx === 10 ? P.ingestRows / 10 : P.ingestRows;
      // fsync latency on a shared disk varies several-fold from one second to the next: more
      // repetitions here than elsewhere, the most for the headline size
      const r = await repeat(Math.max(REPS, tx === 100 ? 9 : 5), { daemon: () => ingestOnce('daemon', tx, rows), raw: () => ingestOnce('raw', tx, rows) });
      const d = summarize(r.daemon);
      const w = summarize(r.raw);
      R.ingest.by_tx[tx] = { readings_per_s: d, raw_readings_per_s: w, ratio: d.median / w.median, rows };
      log(`  ${tx} readings/transaction: daemon ${round(d.median, 0)}/s, raw ${round(w.median, 0)}/s`);
    }
    const head = P.ingestTx.includes(100) ? 100 : P.ingestTx[0];
    put('ingest', 'readings_per_s', R.ingest.by_tx[head].readings_per_s);
    put('ingest', 'raw_readings_per_s', R.ingest.by_tx[head].raw_readings_per_s);
    R.ingest.readings_per_transaction = head;
    R.ingest.ratio = R.ingest.readings_per_s / R.ingest.raw_readings_per_s;
    targets.push({ name: `ingest / raw (${head} readings per transaction, synchronous=FULL)`, value: R.ingest.ratio, target: '>= 0.9', met: R.ingest.ratio >= 0.9 });
    if (!quick) {
      // the CPU-bound case on one core (a Pi Zero 2, or a Pi busy with something else)
      const tx = 1000;
      const r = await repeat(Math.max(REPS, 5), { daemon: () => ingestOnce('daemon', tx, P.ingestRows, 0), raw: () => ingestOnce('raw', tx, P.ingestRows, 0) });
      const d = summarize(r.daemon);
      const w = summarize(r.raw);
      R.ingest.pinned_1000 = { readings_per_s: d, raw_readings_per_s: w, ratio: d.median / w.median };
      log(`  ${tx} readings/transaction, pinned to core 0: daemon ${round(d.median, 0)}/s, raw ${round(w.median, 0)}/s`);
    }
  }

  if (want('drain') || want('startup') || want('memory')) {
    log(`building a backlog of ${P.backlog} pending readings`);
    ctx.backlog = join(workDir, 'backlog.db');
    buildBacklog(ctx.backlog, P.backlog);
  }

  if (want('drain') || want('memory')) {
    log('drain');
    const r = await repeat(REPS, {
      daemon: () => drainContender(ctx, 'daemon', { nodeFlags: profFlags('drain-daemon') }),
      raw: () => drainContender(ctx, 'raw', { nodeFlags: profFlags('drain-raw') }),
      link: () => drainContender(ctx, 'link'),
    });
    const naive = await repeat(REPS, { naive: () => naiveDrain(ctx, { durationMs: P.naiveMs }) });
    put('drain', 'readings_per_s', summarize(r.daemon.map((x) => x.rate)));
    put('drain', 'raw_readings_per_s', summarize(r.raw.map((x) => x.rate)));
    put('drain', 'link_readings_per_s', summarize(r.link.map((x) => x.rate)));
    put('drain', 'naive_readings_per_s', summarize(naive.naive.map((x) => x.rate)));
    put('drain', 'loop_readings_per_s', summarize(r.daemon.map((x) => x.loopRate)));
    put('drain', 'raw_loop_readings_per_s', summarize(r.raw.map((x) => x.loopRate)));
    put('drain', 'peak_rss_mb', summarize(r.daemon.map((x) => x.peakRssMb)));
    put('drain', 'raw_peak_rss_mb', summarize(r.raw.map((x) => x.peakRssMb)));
    put('drain', 'cpu_us_per_reading', summarize(r.daemon.map((x) => x.cpuUs / P.backlog)));
    put('drain', 'raw_cpu_us_per_reading', summarize(r.raw.map((x) => x.cpuUs / P.backlog)));
    R.drain.readings = P.backlog;
    R.drain.duplicates = r.daemon.map((x) => x.duplicates);
    R.drain.catch_up_factor = R.drain.readings_per_s / DEFAULT_RATE;
    R.drain.ratio_raw = R.drain.readings_per_s / R.drain.raw_readings_per_s;
    R.drain.ratio_naive = R.drain.readings_per_s / R.drain.naive_readings_per_s;
    targets.push({ name: 'drain / reference loop', value: R.drain.ratio_raw, target: '>= 0.8', met: R.drain.ratio_raw >= 0.8 });
    targets.push({ name: 'drain / naive design', value: R.drain.ratio_naive, target: '>= 20', met: R.drain.ratio_naive >= 20 });
    log(`  daemon ${round(R.drain.readings_per_s, 0)}/s, raw ${round(R.drain.raw_readings_per_s, 0)}/s, link ${round(R.drain.link_readings_per_s, 0)}/s, naive ${round(R.drain.naive_readings_per_s, 0)}/s, peak RSS ${round(R.drain.peak_rss_mb)} MB`);
    if (P.pinnedDrain) {
      log('drain pinned to core 0');
      const p = await repeat(REPS, { daemon: () => drainContender(ctx, 'daemon', { pin: 0, tag: 'p' }), raw: () => drainContender(ctx, 'raw', { pin: 0, tag: 'p' }) });
      const d = summarize(p.daemon.map((x) => x.rate));
      const w = summarize(p.raw.map((x) => x.rate));
      R.drain.pinned = { readings_per_s: d.median, raw_readings_per_s: w.median, ratio_raw: d.median / w.median, runs: { readings_per_s: d.runs, raw_readings_per_s: w.runs }, min: { readings_per_s: d.min, raw_readings_per_s: w.min }, max: { readings_per_s: d.max, raw_readings_per_s: w.max } };
      log(`  pinned: daemon ${round(d.median, 0)}/s, raw ${round(w.median, 0)}/s`);
    }
  }

  if (want('startup')) {
    log('start-up');
    const r = await repeat(REPS, { empty: () => startupOnce(ctx, {}), backlog: () => startupOnce(ctx, { backlog: ctx.backlog, n: P.backlog }) });
    put('startup', 'ms_empty', summarize(r.empty));
    put('startup', 'ms_backlog', summarize(r.backlog));
    R.startup.backlog_readings = P.backlog;
    R.startup.ratio = R.startup.ms_backlog / R.startup.ms_empty;
    targets.push({ name: `start-up with ${P.backlog} pending / empty`, value: R.startup.ratio, target: '<= 2', met: atMost(R.startup.ratio, 2) });
    log(`  empty ${round(R.startup.ms_empty, 0)} ms, backlog ${round(R.startup.ms_backlog, 0)} ms`);
    if (!quick) {
      const p = await repeat(REPS, { empty: () => startupOnce(ctx, { pin: 0 }), backlog: () => startupOnce(ctx, { backlog: ctx.backlog, n: P.backlog, pin: 0 }) });
      const e = summarize(p.empty);
      const b = summarize(p.backlog);
      R.startup.pinned = { ms_empty: e, ms_backlog: b, ratio: b.median / e.median };
      log(`  pinned to core 0: empty ${round(e.median, 0)} ms, backlog ${round(b.median, 0)} ms`);
    }
  }

  if (want('wire')) {
    log('wire');
    const wb = join(workDir, 'wire-backlog.db');
    buildBacklog(wb, P.wire);
    const r = await repeat(REPS, {
      none: () => wireOnce(ctx, { backlog: wb, n: P.wire, compression: 'none' }),
      gzip: () => wireOnce(ctx, { backlog: wb, n: P.wire, compression: 'gzip' }),
    });
    put('wire', 'bytes_per_reading', summarize(r.none.map((x) => x.bytesPerReading)));
    put('wire', 'compressed_bytes_per_reading', summarize(r.gzip.map((x) => x.bytesPerReading)));
    put('wire', 'payload_bytes_per_reading', summarize(r.none.map((x) => x.payloadPerReading)));
    put('wire', 'compressed_payload_bytes_per_reading', summarize(r.gzip.map((x) => x.payloadPerReading)));
    put('wire', 'broker_to_client_bytes_per_reading', summarize(r.none.map((x) => x.downPerReading)));
    R.wire.readings = P.wire;
    targets.push({ name: 'bytes per reading on the wire, gzip, default sensors', value: R.wire.compressed_bytes_per_reading, target: '<= 40', met: atMost(R.wire.compressed_bytes_per_reading, 40) });
    log(`  ${round(R.wire.bytes_per_reading)} B/reading, gzip ${round(R.wire.compressed_bytes_per_reading)} B/reading`);
    if (P.link && linkAvailable()) {
      log('drain through a 1 Mbit/s link');
      const l = await repeat(REPS, {
        none: () => linkDrain(ctx, { backlog: wb, n: P.linkN, compression: 'none' }),
        gzip: () => linkDrain(ctx, { backlog: wb, n: P.linkN, compression: 'gzip' }),
      });
      R.wire.link_1mbit = { readings: P.linkN };
      for (const c of ['none', 'gzip']) {
        const s = (f) => summarize(l[c].map(f));
        R.wire.link_1mbit[c] = { readings_per_s: s((x) => x.readingsPerS), payload_utilisation: s((x) => x.payloadUtilisation), link_utilisation: s((x) => x.linkUtilisation) };
      }
      log(`  none ${round(R.wire.link_1mbit.none.readings_per_s.median, 0)}/s, gzip ${round(R.wire.link_1mbit.gzip.readings_per_s.median, 0)}/s`);
    } else if (P.link) {
      R.wire.link_1mbit = { skipped: 'needs root and iproute2 (network namespaces, tc tbf)' };
    }
  }

  if (want('live')) {
    const lv = { backlog: 200_000, delayMs: 300, samples: quick ? 5 : 10 };
    log(`live: state latency while ${lv.backlog} pending readings drain through a link ${lv.delayMs} ms each way`);
    const lb = join(workDir, 'live-backlog.db');
    buildBacklog(lb, lv.backlog);
    const r = await repeat(REPS, { live: () => liveOnce(ctx, { backlog: lb, delayMs: lv.delayMs, samples: lv.samples }) });
    put('live', 'state_latency_ms', summarize(r.live.map((x) => x.medianMs)));
    put('live', 'state_latency_max_ms', summarize(r.live.map((x) => x.maxMs)));
    Object.assign(R.live, { backlog: lv.backlog, link_delay_ms: lv.delayMs, pending_min: Math.min(...r.live.map((x) => x.pending)) });
    const worst = R.live.max.state_latency_max_ms;
    targets.push({ name: 'live state latency under a backlog, worst (ms)', value: worst, target: '<= 1000', met: atMost(worst, 1000) && R.live.pending_min > 0 });
    log(`  ${round(R.live.state_latency_ms, 0)} ms (worst ${round(worst, 0)} ms), ${R.live.pending_min} still pending`);
    rmSync(lb, { force: true });
  }

  if (want('collect')) {
    const c = P.collect;
    const shape = { devices: c.devices, perDevice: c.perDevice, batch: c.batch };
    log(`collect: ${c.devices * c.perDevice} readings from ${c.devices} devices queued at the broker, into PostgreSQL`);
    if (!(await pgAvailable())) {
      R.collect = { skipped: 'PostgreSQL not reachable (BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres)' };
    } else {
      ctx.pg = await benchDatabase();
      try {
        const r = await repeat(REPS, {
          one: () => collectorDrain(ctx, { members: 1, shape, nodeFlags: profFlags('collect-one') }),
          two: () => collectorDrain(ctx, { members: 2, shape }),
          raw: () => rawInsert(ctx, { shape }),
        });
        const naive = await repeat(REPS, { naive: () => naiveCollect(ctx, { shape: { ...shape, perDevice: c.naivePerDevice }, durationMs: c.naiveMs }) });
        put('collect', 'readings_per_s', summarize(r.one.map((x) => x.loopRate)));
        put('collect', 'two_readings_per_s', summarize(r.two.map((x) => x.loopRate)));
        put('collect', 'raw_readings_per_s', summarize(r.raw));
        put('collect', 'naive_readings_per_s', summarize(naive.naive));
        put('collect', 'rss_mb', summarize(r.one.map((x) => x.peakRssMb)));
        put('collect', 'from_start_readings_per_s', summarize(r.one.map((x) => x.rate)));
        R.collect.readings = c.devices * c.perDevice;
        R.collect.devices = c.devices;
        R.collect.readings_per_message = c.batch;
        R.collect.ratio_raw = R.collect.readings_per_s / R.collect.raw_readings_per_s;
        R.collect.ratio_naive = R.collect.readings_per_s / R.collect.naive_readings_per_s;
        targets.push({ name: 'collect / reference loop', value: R.collect.ratio_raw, target: '>= 0.7', met: R.collect.ratio_raw >= 0.7 });
        log(`  one ${round(R.collect.readings_per_s, 0)}/s, two ${round(R.collect.two_readings_per_s, 0)}/s, raw ${round(R.collect.raw_readings_per_s, 0)}/s, naive ${round(R.collect.naive_readings_per_s, 0)}/s, peak RSS ${round(R.collect.rss_mb)} MB`);
      } finally {
        await ctx.pg.drop().catch(() => {});
      }
    }
  }

  if (want('fleetpage')) {
    const fp = quick ? FLEET_QUICK : process.env.BENCH_FLEET === 'full' ? FLEET_FULL : FLEET_DEFAULT;
    log(`fleetpage: ${fp.devices} devices × ${fp.sensors} sensors, a reading every ${fp.stepS} s for ${fp.days} days, and one device at 1 Hz for ${fp.denseDays} days; the page's API timed`);
    if (!(await pgAvailable())) {
      R.fleetpage = { skipped: 'PostgreSQL not reachable (BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432/postgres)' };
      log(`  skipped: ${R.fleetpage.skipped}`);
    } else {
      try {
        const r = await fleetPageBench(fp, { requests: quick ? 10 : 30, log });
        R.fleetpage = { shape: fp, generated: r.generated ?? 'reused', p95_ms: {}, response_bytes: {}, points: {} };
        for (const [k, e] of Object.entries(r.endpoints)) {
          put('fleetpage', `${k}_ms`, summarize(e.ms));
          R.fleetpage.p95_ms[k] = e.p95;
          R.fleetpage.response_bytes[k] = e.bytes;
          if (e.points) R.fleetpage.points[k] = e.points;
        }
        const worst = Math.max(...Object.keys(r.endpoints).map((k) => R.fleetpage[`${k}_ms`]));
        targets.push({ name: 'fleet page API, slowest endpoint median, ms', value: worst, target: '<= 250', met: atMost(worst, 250) });
      } finally {
        if (!args.keep && process.env.BENCH_FLEET_REUSE !== '1') await dropFleetDatabase().catch(() => {});
      }
    }
  }

  if (want('steady') || want('memory')) {
    log(`steady state: ${P.steadyMs / 1000} s window after ${P.steadyWarmMs / 1000} s warm-up, 3 copies of each contender side by side`);
    const s = await steadyPhase(ctx, { warmupMs: P.steadyWarmMs, windowMs: P.steadyMs, copies: REPS });
    // BENCH_STEADY_KINDS may have left contenders out: their keys are missing, nothing fails
    const has = (k) => s[k] !== undefined;
    R.steady = { sensors: '10 simulated sensors at 1 Hz, daemon pinned to core 0 (taskset -c 0)', window_s: s.windowS };
    const pinned = s['sim10-pinned'];
    if (pinned) {
      put('steady', 'cpu_us_per_reading', pinned.cpu_us_per_reading);
      put('steady', 'disk_bytes_per_reading', pinned.disk_bytes_per_reading);
      put('steady', 'rss_mb', pinned.rss_mb);
      put('steady', 'cpu_us_per_s', pinned.cpu_us_per_s);
    }
    if (has('sim10')) R.steady.unpinned = flat(s.sim10);
    if (has('naive-pinned')) R.steady.naive = flat(s['naive-pinned']);
    if (has('floor-pinned')) R.steady.node_floor = flat(s['floor-pinned']);
    if (has('floor-default-pinned')) R.steady.node_floor_default = flat(s['floor-default-pinned']);
    if (has('default')) {
      R.steady.default_sensors = flat(s.default);
      // what the targets name: the default sensors and config, one core
      put('steady', 'disk_bytes_per_reading_default', s.default.disk_bytes_per_reading);
      const perS = s.default.cpu_us_per_s;
      put('steady', 'cpu_ms_per_s_default', { median: perS.median / 1000, runs: perS.runs.map((x) => x / 1000), min: perS.min / 1000, max: perS.max / 1000 });
      put('steady', 'wal_frames_per_reading_default', s.default.wal_frames_per_reading);
    }
    if (has('sim10-window10s')) {
      R.steady.window_10s_pinned = flat(s['sim10-window10s']);
      put('steady', 'disk_bytes_per_reading_window10s', s['sim10-window10s'].disk_bytes_per_reading);
    }
    if (pinned) put('steady', 'wal_frames_per_reading', pinned.wal_frames_per_reading);
    if (has('default-sync60s')) R.steady.default_sensors_sync_60s = flat(s['default-sync60s']);
    if (has('sim100-pinned')) R.steady.sim100_pinned = flat(s['sim100-pinned']);
    if (has('sim25-pinned')) R.steady.sim25_pinned = flat(s['sim25-pinned']);
    if (has('sim10-pinned-sync10s')) R.steady.sync_10s_pinned = flat(s['sim10-pinned-sync10s']);
    if (s['collectd-pinned']) R.steady.collectd = flat(s['collectd-pinned']);
    else R.steady.collectd = { skipped: collectdAvailable() ? 'did not run' : 'collectd (collectd-core with its mqtt plugin) is not installed' };
    if (has('default')) {
      put('idle', 'rss_mb', s.default.rss_mb);
      R.idle.after_s = (P.steadyWarmMs + P.steadyMs) / 1000;
      R.idle.sensors = 'default (sim-temp every 5 s, cpu-load every 10 s), broker up';
      targets.push({ name: 'idle RSS, default sensors (MB)', value: R.idle.rss_mb, target: '<= 60', met: atMost(R.idle.rss_mb, 60) });
      targets.push({ name: 'disk bytes per reading, default sensors and config', value: R.steady.disk_bytes_per_reading_default, target: '<= 8000', met: atMost(R.steady.disk_bytes_per_reading_default, 8000) });
      targets.push({ name: 'CPU per second, default sensors and config (ms)', value: R.steady.cpu_ms_per_s_default, target: '<= 0.5', met: atMost(R.steady.cpu_ms_per_s_default, 0.5) });
    }
    for (const d of [R.steady.default_sensors, R.steady.default_sensors_sync_60s]) if (d) d.year_bytes = d.disk_bytes_per_reading * DEFAULT_RATE * 365 * 86400;
    if (pinned) targets.push({ name: 'disk bytes per reading, 10 sensors at 1 Hz', value: R.steady.disk_bytes_per_reading, target: '<= 2500', met: atMost(R.steady.disk_bytes_per_reading, 2500) });
    if (R.steady.window_10s_pinned) targets.push({ name: 'disk bytes per reading, 10 sensors, commit window 10 s', value: R.steady.disk_bytes_per_reading_window10s, target: '<= 1000', met: atMost(R.steady.disk_bytes_per_reading_window10s, 1000) });
    const cd = R.steady.collectd.cpu_us_per_value;
    if (typeof cd === 'number' && pinned) {
      targets.push({ name: 'CPU per reading (10 sensors, one core) / collectd per value (one core)', value: R.steady.cpu_us_per_reading / cd, target: '<= 2', met: atMost(R.steady.cpu_us_per_reading, 2 * cd) });
    }
    log(`  ${round(R.steady.cpu_us_per_reading)} µs and ${round(R.steady.disk_bytes_per_reading, 0)} B per reading (10 sensors); default sensors ${round(R.steady.disk_bytes_per_reading_default, 0)} B and ${round(R.steady.cpu_ms_per_s_default, 2)} ms CPU/s; window 10 s ${round(R.steady.disk_bytes_per_reading_window10s, 0)} B; idle RSS ${round(R.idle?.rss_mb)} MB; collectd ${round(cd)} µs/value`);
  }
  if (R.drain?.peak_rss_mb && R.idle?.rss_mb) {
    R.drain.peak_over_idle = R.drain.peak_rss_mb / R.idle.rss_mb;
    targets.push({ name: 'drain peak RSS / idle RSS', value: R.drain.peak_over_idle, target: '<= 1.5', met: atMost(R.drain.peak_over_idle, 1.5) });
  }
} finally {
  clearInterval(loadTimer);
  await counter?.stop().catch(() => {});
  await broker?.stop();
  if (!args.keep) rmSync(workDir, { recursive: true, force: true });
}

function flat(o) {
  const out = { runs: {}, min: {}, max: {} };
  for (const [k, s] of Object.entries(o)) {
    out[k] = s.median;
    out.runs[k] = s.runs;
    out.min[k] = s.min;
    out.max[k] = s.max;
  }
  return out;
}

loads.push(loadAvg()[0]);
R.machine.load_avg_1m = { mean: loads.reduce((a, b) => a + b, 0) / loads.length, min: Math.min(...loads), max: Math.max(...loads) };
R.machine.duration_s = Math.round((Date.now() - started) / 1000);
R.targets = targets;
if (args.json) writeFileSync(args.json, JSON.stringify(R, null, 1) + '\n');
const text = table(R);
console.log(text);
if (args.docs || args.readme) {
  // the table in docs/benchmarks.md is the output of a full run: written between its markers
  const file = join(ROOT, 'docs', 'benchmarks.md');
  const md = readFileSync(file, 'utf8');
  const re = /(<!-- bench-table: [^>]*-->\n)[\s\S]*?(<!-- \/bench-table -->)/;
  if (!re.test(md)) throw new Error('docs/benchmarks.md has no bench-table markers');
  const cmd = `npm run bench${quick ? ' -- --quick' : ''}`;
  writeFileSync(file, md.replace(re, (_, a, b) => `${a}\`${cmd}\`, ${new Date().toISOString().slice(0, 10)}:\n\n${text}\n${b}`));
}

function table(r) {
  const rows = [];
  const row = (what, value, range, ref, ratio, target, met) => rows.push([what, value, range, ref, ratio, target, met === undefined ? '' : met ? 'met' : 'MISSED']);
  const n0 = (v) => (v == null ? '-' : Math.round(v).toLocaleString('en-US'));
  const n1 = (v) => (v == null ? '-' : (Math.round(v * 10) / 10).toLocaleString('en-US'));
  const rng = (sec, k, f = n0) => (sec?.min?.[k] == null ? '' : `${f(sec.min[k])}–${f(sec.max[k])}`);
  /** min–max of one summarize() result */
  const span = (x, f = n0) => `${f(x.min)}–${f(x.max)}`;
  const t = (name) => targets.find((x) => x.name.startsWith(name));
  if (r.ingest) {
    row(`ingest, readings/s (${r.ingest.readings_per_transaction}/transaction, FULL)`, n0(r.ingest.readings_per_s), rng(r.ingest, 'readings_per_s'), `raw ${n0(r.ingest.raw_readings_per_s)}`, r.ingest.ratio.toFixed(2), '>= 0.9', t('ingest')?.met);
    for (const [tx, x] of Object.entries(r.ingest.by_tx)) {
      if (Number(tx) === r.ingest.readings_per_transaction) continue;
      row(`  ingest, ${tx}/transaction`, n0(x.readings_per_s.median), span(x.readings_per_s), `raw ${n0(x.raw_readings_per_s.median)}`, x.ratio.toFixed(2), '', undefined);
    }
    const ip = r.ingest.pinned_1000;
    if (ip) row('  ingest, 1000/transaction, pinned to one core', n0(ip.readings_per_s.median), span(ip.readings_per_s), `raw ${n0(ip.raw_readings_per_s.median)}`, ip.ratio.toFixed(2), '', undefined);
  }
  if (r.drain) {
    row(`drain ${n0(r.drain.readings)} pending, readings/s`, n0(r.drain.readings_per_s), rng(r.drain, 'readings_per_s'), `reference loop ${n0(r.drain.raw_readings_per_s)}`, r.drain.ratio_raw.toFixed(2), '>= 0.8', t('drain / reference')?.met);
    row('  start-up left out (from the first reading at the subscriber)', n0(r.drain.loop_readings_per_s), rng(r.drain, 'loop_readings_per_s'), `reference loop ${n0(r.drain.raw_loop_readings_per_s)}`, (r.drain.loop_readings_per_s / r.drain.raw_loop_readings_per_s).toFixed(2), '', undefined);
    row('  against the naive design', '', '', `naive ${n0(r.drain.naive_readings_per_s)} (${rng(r.drain, 'naive_readings_per_s')})`, r.drain.ratio_naive.toFixed(1), '>= 20', t('drain / naive')?.met);
    row('  link limit (pre-encoded, from memory)', n0(r.drain.link_readings_per_s), rng(r.drain, 'link_readings_per_s'), '', '', '', undefined);
    row('  catch-up factor (drain / default sampling 0.3/s)', n0(r.drain.catch_up_factor), '', '', '', '', undefined);
    if (r.drain.pinned) row('  pinned to one core (taskset -c 0)', n0(r.drain.pinned.readings_per_s), `${n0(r.drain.pinned.min.readings_per_s)}–${n0(r.drain.pinned.max.readings_per_s)}`, `reference loop ${n0(r.drain.pinned.raw_readings_per_s)}`, r.drain.pinned.ratio_raw.toFixed(2), '', undefined);
    row('  CPU per reading drained, µs', n1(r.drain.cpu_us_per_reading), rng(r.drain, 'cpu_us_per_reading', n1), `reference loop ${n1(r.drain.raw_cpu_us_per_reading)}`, '', '', undefined);
  }
  if (r.drain?.peak_over_idle !== undefined) row('drain peak RSS, MB', n1(r.drain.peak_rss_mb), rng(r.drain, 'peak_rss_mb', n1), `idle ${n1(r.idle.rss_mb)}`, r.drain.peak_over_idle.toFixed(2), '<= 1.5', t('drain peak')?.met);
  if (r.idle) row(`idle RSS, MB (default sensors, after ${r.idle.after_s} s)`, n1(r.idle.rss_mb), rng(r.idle, 'rss_mb', n1), '', '', '<= 60', t('idle RSS')?.met);
  if (r.startup) row(`start-up to first committed reading, ms`, n0(r.startup.ms_backlog), rng(r.startup, 'ms_backlog'), `empty ${n0(r.startup.ms_empty)} (${rng(r.startup, 'ms_empty')})`, r.startup.ratio.toFixed(2), '<= 2', t('start-up')?.met);
  const sp = r.startup?.pinned;
  if (sp) row('  pinned to one core, ms', n0(sp.ms_backlog.median), span(sp.ms_backlog), `empty ${n0(sp.ms_empty.median)} (${span(sp.ms_empty)})`, sp.ratio.toFixed(2), '', undefined);
  if (r.steady) {
    const st = r.steady;
    const cd = st.collectd;
    const cdv = typeof cd.cpu_us_per_value === 'number' ? cd.cpu_us_per_value : undefined;
    /** a contender's row only when it ran (BENCH_STEADY_KINDS can leave some out) */
    const opt = (sec, f) => sec && f(sec);
    if (st.cpu_us_per_reading !== undefined) row('steady CPU per reading, µs (10 sensors at 1 Hz, one core)', n1(st.cpu_us_per_reading), rng(st, 'cpu_us_per_reading', n1), cdv !== undefined ? `collectd ${n1(cdv)}/value` : `collectd: ${cd.skipped ?? '-'}`, cdv !== undefined ? (st.cpu_us_per_reading / cdv).toFixed(2) : '', '<= 2', t('CPU per reading')?.met);
    opt(st.naive, (x) => row('  naive writer (a transaction per reading), µs', n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), '', '', '', undefined));
    opt(st.node_floor, (x) => row('  Node.js floor (the same durable work and nothing else: node-floor.mjs), µs', n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), cdv !== undefined ? `collectd ${n1(cdv)}/value` : '', cdv !== undefined ? (x.cpu_us_per_reading / cdv).toFixed(2) : '', '', undefined));
    opt(st.unpinned, (x) => row('  unpinned, µs', n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), '', '', '', undefined));
    opt(st.sync_10s_pinned, (x) => row('  sync.intervalMs 10000 (one sync round per 10 s), one core, µs', n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), `${n0(x.disk_bytes_per_reading)} B/reading on disk`, '', '', undefined));
    opt(st.sim100_pinned, (x) => row('  100 readings/s (10 sensors × 10 values), one core, µs', n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), '', '', '', undefined));
    opt(st.sim25_pinned, (x) => {
      const c25 = cdv !== undefined ? `collectd ${n1(cdv)}/value at ${n1(cd.values_per_s)} values/s` : '';
      row("  25 readings/s (5 sensors × 5 values: collectd's rate), one core, µs", n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), c25, c25 ? (x.cpu_us_per_reading / cdv).toFixed(2) : '', '', undefined);
    });
    opt(st.default_sensors, (x) => {
      row('idle CPU per second, ms (default sensors and config, one core)', n1(st.cpu_ms_per_s_default), rng(st, 'cpu_ms_per_s_default', (v) => n1(v)), typeof cd.cpu_us_per_s === 'number' ? `collectd ${n1(cd.cpu_us_per_s / 1000)}` : '', '', '<= 0.5', t('CPU per second, default')?.met);
      row('  default sensors, µs per reading', n1(x.cpu_us_per_reading), rng(x, 'cpu_us_per_reading', n1), '', '', '', undefined);
      opt(st.node_floor_default, (f) => row('  Node.js floor at the same pace (a reading every 5 s and nothing else: node-floor.mjs), ms', n1(f.cpu_us_per_s / 1000), `${n1(f.min.cpu_us_per_s / 1000)}–${n1(f.max.cpu_us_per_s / 1000)}`, '', '', '', undefined));
    });
    if (st.disk_bytes_per_reading !== undefined) row('steady disk writes per reading, bytes (10 sensors at 1 Hz)', n0(st.disk_bytes_per_reading), rng(st, 'disk_bytes_per_reading'), st.naive ? `naive ${n0(st.naive.disk_bytes_per_reading)}` : '', st.naive ? (st.disk_bytes_per_reading / st.naive.disk_bytes_per_reading).toFixed(2) : '', '<= 2500', t('disk bytes per reading, 10 sensors')?.met);
    if (st.wal_frames_per_reading !== undefined) row('  WAL frames (page writes) per reading', n1(st.wal_frames_per_reading), rng(st, 'wal_frames_per_reading', n1), '', '', '', undefined);
    opt(st.window_10s_pinned, (x) => row('  database.commitWindowMs 10000, bytes per reading', n0(x.disk_bytes_per_reading), rng(x, 'disk_bytes_per_reading'), `${n1(x.wal_frames_per_reading)} WAL frames/reading`, '', '<= 1000', t('disk bytes per reading, 10 sensors, commit')?.met));
    opt(st.default_sensors, (x) => row('steady disk writes per reading, bytes (default sensors and config)', n0(x.disk_bytes_per_reading), rng(x, 'disk_bytes_per_reading'), `${n1(x.year_bytes / 1e9)} GB/year; ${n1(x.wal_frames_per_reading)} WAL frames/reading`, '', '<= 8000', t('disk bytes per reading, default')?.met));
    opt(st.default_sensors_sync_60s, (x) => row('  default sensors, sync.intervalMs 60000', n0(x.disk_bytes_per_reading), rng(x, 'disk_bytes_per_reading'), `${n1(x.year_bytes / 1e9)} GB/year; ${n1(x.cpu_us_per_reading)} µs/reading`, '', '', undefined));
    if (typeof cd.rss_mb === 'number') row('  collectd RSS, MB', n1(cd.rss_mb), rng(cd, 'rss_mb', n1), '', '', '', undefined);
  }
  if (r.collect?.skipped) row('collector into PostgreSQL', 'skipped', '', r.collect.skipped, '', '', undefined);
  else if (r.collect) {
    row(`collector, ${n0(r.collect.readings)} queued readings into PostgreSQL, readings/s`, n0(r.collect.readings_per_s), rng(r.collect, 'readings_per_s'), `reference loop ${n0(r.collect.raw_readings_per_s)}`, r.collect.ratio_raw.toFixed(2), '>= 0.7', t('collect / reference')?.met);
    row('  two collectors, one share group', n0(r.collect.two_readings_per_s), rng(r.collect, 'two_readings_per_s'), '', '', '', undefined);
    row('  against the naive design (an INSERT per reading)', '', '', `naive ${n0(r.collect.naive_readings_per_s)} (${rng(r.collect, 'naive_readings_per_s')})`, r.collect.ratio_naive.toFixed(1), '', undefined);
    row('  start-up included', n0(r.collect.from_start_readings_per_s), rng(r.collect, 'from_start_readings_per_s'), '', '', '', undefined);
    row('  collector peak RSS, MB', n1(r.collect.rss_mb), rng(r.collect, 'rss_mb', n1), '', '', '', undefined);
  }
  if (r.live) {
    row(`live state latency, ms (${n0(r.live.backlog)} pending draining, link +${r.live.link_delay_ms} ms each way)`, n0(r.live.state_latency_ms), rng(r.live, 'state_latency_ms'), `worst ${n0(r.live.max.state_latency_max_ms)}; ${n0(r.live.pending_min)} still pending`, '', '<= 1000 (worst)', t('live state')?.met);
  }
  if (r.fleetpage?.skipped) row('fleet page API', 'skipped', '', r.fleetpage.skipped, '', '', undefined);
  else if (r.fleetpage) {
    const f = r.fleetpage;
    const g = f.generated && typeof f.generated === 'object' ? `${n0(f.generated.rows)} readings, ${n1(f.generated.readingsBytes / 1e9)} GB with indexes` : 'a database reused';
    row(`fleet page API, ms (${n0(f.shape.devices)} devices, ${f.shape.days} days, a reading per sensor every ${f.shape.stepS / 60} min: ${g})`, '', '', '', '', '', undefined);
    const names = { devices: '/api/devices (the fleet table)', device: '/api/devices/:id (a device, its sensors and gaps)', series_1h: 'series, 1 h', series_24h: 'series, 24 h', series_7d: 'series, 7 d', series_365d: `series, ${Math.min(365, f.shape.days)} d`, series_7d_1hz: `series, ${f.shape.denseDays} d of 1 Hz readings`, backlog_7d: 'backlog, 7 d' };
    for (const [k, name] of Object.entries(names)) {
      if (f[`${k}_ms`] === undefined) continue;
      const pts = f.points?.[k] ? `${f.points[k]} points, ` : '';
      row(`  ${name}`, n1(f[`${k}_ms`]), rng(f, `${k}_ms`, n1), `p95 ${n1(f.p95_ms[k])}; ${pts}${n0(f.response_bytes[k])} bytes`, '', k === 'devices' ? '<= 250 (all)' : '', k === 'devices' ? t('fleet page API')?.met : undefined);
    }
  }
  if (r.wire) {
    row('wire bytes per reading, gzip (batches of 500)', n1(r.wire.compressed_bytes_per_reading), rng(r.wire, 'compressed_bytes_per_reading', n1), `uncompressed ${n1(r.wire.bytes_per_reading)}`, '', '<= 40', t('bytes per reading')?.met);
    const l = r.wire.link_1mbit;
    if (l?.none) {
      for (const c of ['none', 'gzip']) row(`  through 1 Mbit/s (tc tbf), ${c}`, `${n0(l[c].readings_per_s.median)}/s`, span(l[c].readings_per_s), `payload ${(l[c].payload_utilisation.median * 100).toFixed(0)}% of the link, wire ${(l[c].link_utilisation.median * 100).toFixed(0)}%`, '', '', undefined);
    } else if (l?.skipped) row('  through 1 Mbit/s', 'skipped', '', l.skipped, '', '', undefined);
  }
  const head = ['Figure', 'Median', 'Min–max', 'Reference', 'Ratio', 'Target', ''];
  const lines = [head, head.map(() => '---'), ...rows].map((c) => `| ${c.join(' | ')} |`);
  const m = r.machine;
  lines.push('', `${m.cpu}, ${m.cores} cores, Node ${m.node}; load average (1 min) during the run: mean ${m.load_avg_1m.mean.toFixed(1)}, ${m.load_avg_1m.min.toFixed(1)}–${m.load_avg_1m.max.toFixed(1)}; ${m.duration_s} s${m.quick ? ' (--quick)' : ''}; medians of ${m.repetitions}.`);
  return lines.join('\n');
}
