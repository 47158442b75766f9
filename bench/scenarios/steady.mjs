// Steady state, all contenders side by side for the same window: the daemon with the default
// sensors (idle RSS, CPU and disk per reading; pinned to core 0), the daemon with 10 simulated
// sensors at 1 Hz (pinned to core 0 and unpinned), the naive writer with the same 10 sensors (pinned),
// the Node.js floor (the same durable work and nothing else, pinned) and collectd (pinned) where it
// is installed. Each contender runs in 3 copies: the median is reported.
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { daemonConfig, daemonNodeFlags, startDaemon, DEFAULT_SENSORS, simSensors, TOPIC_PREFIX } from '../lib/daemon.mjs';
import { ROOT, threadCpuUs, memMb, writeBytes, spawnNode, stopChild, sleep, summarize } from '../lib/util.mjs';

function maxSeq(db) {
  if (!existsSync(db)) return 0;
  const c = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return c.prepare('SELECT coalesce(max(rowid), 0) FROM transactions').pluck().get();
  } catch {
    return 0;
  } finally {
    c.close();
  }
}

/**
 * WAL frames (page writes) a database received: polls mxFrame and the salt in the wal-index header
 * (the -shm file) and adds what each look shows; a restarted WAL (new salt or a smaller mxFrame)
 * counts from zero again. A restart and regrowth between two looks would be missed: the looks come
 * every 100 ms, commits at most a few a second.
 */
function walFrameCounter(db) {
  let total = 0;
  let last = 0;
  let salt = '';
  const buf = Buffer.alloc(48);
  const look = () => {
    let fd;
    try {
      fd = openSync(db + '-shm', 'r');
      if (readSync(fd, buf, 0, 48, 0) < 48) return;
    } catch {
      return;
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    const mx = buf.readUInt32LE(16);
    const s = buf.subarray(32, 40).toString('hex');
    if (s !== salt || mx < last) {
      total += mx;
      salt = s;
    } else total += mx - last;
    last = mx;
  };
  const timer = setInterval(look, 100);
  return { get: () => (look(), total), stop: () => clearInterval(timer) };
}

const COLLECTD = '/usr/sbin/collectd';
export const collectdAvailable = () => existsSync(COLLECTD) && existsSync('/usr/lib/collectd/mqtt.so');

function startCollectd(dir, host, port, pin) {
  mkdirSync(dir, { recursive: true });
  const conf = join(dir, 'collectd.conf');
  writeFileSync(
    conf,
    `Hostname "${host}"
FQDNLookup false
Interval 1
BaseDir "${dir}"
PIDFile "${dir}/collectd.pid"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
LoadPlugin mqtt
<Plugin mqtt>
  <Publish "bench">
    Host "127.0.0.1"
    Port ${port}
    ClientId "collectd-${host}"
    QoS 1
    Prefix "collectd"
    Retain false
  </Publish>
</Plugin>
`,
  );
  const child = spawn('taskset', ['-c', String(pin), COLLECTD, '-f', '-C', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  child.stdout.on('data', (d) => (err += d));
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  return { child, pid: child.pid, exited, err: () => err };
}

/** counts collectd's messages (one per value list) and values (data sources) per host */
async function collectdCounter(url) {
  const counts = new Map();
  const client = mqtt.connect(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `bench-collectd-${process.pid}` });
  client.on('error', () => {});
  await new Promise((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  client.on('message', (topic, buf) => {
    const host = topic.split('/')[1];
    const c = counts.get(host) ?? { messages: 0, values: 0 };
    c.messages++;
    c.values += Math.max(1, buf.toString().split(':').length - 1);
    counts.set(host, c);
  });
  await client.subscribeAsync('collectd/#', { qos: 1 });
  return { get: (h) => ({ ...(counts.get(h) ?? { messages: 0, values: 0 }) }), stop: () => client.endAsync(true) };
}

/**
 * BENCH_STEADY_KINDS=default,sim10-pinned runs only these contenders (a short look at the disk
 * bytes while developing: those do not depend on the machine's load, CPU figures do).
 */
const KINDS = process.env.BENCH_STEADY_KINDS ? new Set(process.env.BENCH_STEADY_KINDS.split(',')) : undefined;

export async function steadyPhase(ctx, { warmupMs, windowMs, copies = 3 }) {
  const dir = join(ctx.workDir, 'steady');
  mkdirSync(dir, { recursive: true });
  const url = ctx.broker.url;
  const list = [];
  const cc = collectdAvailable() ? await collectdCounter(url) : undefined;
  for (let i = 0; i < copies; i++) {
    const add = (kind, device, start, count, frames) => (!KINDS || KINDS.has(kind)) && list.push({ kind, device, proc: start(), count, frames: frames?.() });
    const daemon = (kind, device, sensors, pin, extra = {}) => {
      const db = join(dir, `${device}.db`);
      // retention as on a device past its first 3 days: every reading that is added is also
      // deleted later, and the sync log is pruned; a short age puts both inside the window
      const retention = { syncedMaxAge: '1m', pruneIntervalMs: 10_000, syncLogMaxRows: 100 };
      const cfg = daemonConfig(dir, { db, url, device, sensors, retention, ...extra });
      add(kind, device, () => startDaemon(cfg, { pin }), () => maxSeq(db), () => walFrameCounter(db));
    };
    // the default sensors and the default config (only the age shortened, so that deletion runs
    // inside the window, and a pass a minute instead of the default's every 10 minutes, so that
    // several do: this costs more than the default), on one core: what a Pi Zero 2 or a busy Pi gives
    daemon('default', `default-${i}`, DEFAULT_SENSORS, 0, { retention: { syncedMaxAge: '1m', pruneIntervalMs: 60_000 } });
    // the SD-card trade-off: acknowledged rows marked once a minute instead of every second
    daemon('default-sync60s', `default60-${i}`, DEFAULT_SENSORS, 0, { sync: { intervalMs: 60_000 } });
    daemon('sim10-pinned', `sim10p-${i}`, simSensors(10), 0);
    // the SD-card setting: readings wait in memory up to 10 s and are committed together
    daemon('sim10-window10s', `sim10w-${i}`, simSensors(10), 0, { database: { commitWindowMs: 10_000 } });
    daemon('sim10', `sim10-${i}`, simSensors(10));
    // the CPU trade-off: one sync round (publish, PUBACK, a transaction) per 10 s instead of per second
    daemon('sim10-pinned-sync10s', `sim10s-${i}`, simSensors(10), 0, { sync: { intervalMs: 10_000 } });
    // 100 readings/s (10 sensors of 10 values each): the fixed costs per second spread thinner
    daemon('sim100-pinned', `sim100p-${i}`, simSensors(10, { count: 10 }), 0);
    // 25 readings/s (5 sensors of 5 values): about the values per second collectd publishes here
    daemon('sim25-pinned', `sim25p-${i}`, simSensors(5, { count: 5 }), 0);
    const ndb = join(dir, `naive-${i}.db`);
    add('naive-pinned', `naive-${i}`, () => spawnNode([join(ROOT, 'bench/reference/naive-writer.mjs'), ndb, url, `${TOPIC_PREFIX}/naive-${i}/readings`, '10'], { pin: 0 }), () => maxSeq(ndb));
    // the same durable work with nothing else around it, under the daemon's node flags: what Node.js itself costs
    const fdb = join(dir, `floor-${i}.db`);
    add('floor-pinned', `floor-${i}`, () => spawnNode([join(ROOT, 'bench/reference/node-floor.mjs'), fdb, url, `${TOPIC_PREFIX}/floor-${i}/readings`, '10'], { pin: 0, nodeFlags: daemonNodeFlags() }), () => maxSeq(fdb));
    // the same at the default sensors' pace (a reading every 5 s): what an idle Node.js process costs
    const fddb = join(dir, `floor-default-${i}.db`);
    add('floor-default-pinned', `floor-default-${i}`, () => spawnNode([join(ROOT, 'bench/reference/node-floor.mjs'), fddb, url, `${TOPIC_PREFIX}/floor-default-${i}/readings`, '1', '5'], { pin: 0, nodeFlags: daemonNodeFlags() }), () => maxSeq(fddb));
    if (cc) add('collectd-pinned', `cd${i}`, () => startCollectd(join(dir, `collectd-${i}`), `cd${i}`, ctx.broker.port, 0), () => cc.get(`cd${i}`).messages);
  }
  await sleep(warmupMs);
  const snap = () =>
    list.map((c) => {
      try {
        return { cpu: threadCpuUs(c.proc.pid), wb: writeBytes(c.proc.pid), n: c.count(), mem: memMb(c.proc.pid), frames: c.frames?.get(), values: c.kind.startsWith('collectd') ? cc.get(c.device).values : undefined };
      } catch (err) {
        throw new Error(`${c.kind} ${c.device} is not running: ${(c.proc.err?.() ?? '').slice(-400)}`, { cause: err });
      }
    });
  const a = snap();
  await sleep(windowMs);
  const b = snap();
  for (const c of list) c.frames?.stop();
  await Promise.all(list.map((c) => (c.proc.child ? stopChild(c.proc) : undefined)));
  await cc?.stop();
  const by = {};
  list.forEach((c, i) => {
    const n = b[i].n - a[i].n;
    const r = (by[c.kind] ??= { cpu: [], disk: [], rss: [], n: [], cpuPerValue: [], cpuPerS: [], valuesPerS: [], frames: [] });
    if (b[i].frames !== undefined) r.frames.push(n > 0 ? (b[i].frames - a[i].frames) / n : NaN);
    r.n.push(n);
    r.cpuPerS.push((b[i].cpu - a[i].cpu) / (windowMs / 1000));
    r.cpu.push(n > 0 ? (b[i].cpu - a[i].cpu) / n : NaN);
    r.disk.push(n > 0 ? (b[i].wb - a[i].wb) / n : NaN);
    r.rss.push(b[i].mem.rss);
    if (b[i].values !== undefined) {
      r.cpuPerValue.push((b[i].cpu - a[i].cpu) / (b[i].values - a[i].values));
      r.valuesPerS.push((b[i].values - a[i].values) / (windowMs / 1000));
    }
  });
  const out = {};
  for (const [k, r] of Object.entries(by)) {
    out[k] = { readings: summarize(r.n), cpu_us_per_reading: summarize(r.cpu), cpu_us_per_s: summarize(r.cpuPerS), disk_bytes_per_reading: summarize(r.disk), rss_mb: summarize(r.rss) };
    if (r.frames.length) out[k].wal_frames_per_reading = summarize(r.frames);
    if (r.cpuPerValue.length) {
      out[k].cpu_us_per_value = summarize(r.cpuPerValue);
      out[k].values_per_s = summarize(r.valuesPerS);
    }
  }
  out.windowS = windowMs / 1000;
  return out;
}
