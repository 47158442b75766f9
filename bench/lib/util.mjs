// Small helpers shared by the bench scenarios: statistics, waiting, /proc readers, child processes.
import { spawn, execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');
export const dist = (p) => import(join(ROOT, 'dist', p));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls fn until it returns a truthy value; throws after timeoutMs. */
export async function waitFor(fn, timeoutMs, what, stepMs = 20) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** median, min and max of repeated measurements (the figure reported is the median) */
export function summarize(values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { median: null, min: null, max: null, runs: values };
  const m = v.length >> 1;
  const median = v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  return { median, min: v[0], max: v[v.length - 1], runs: values };
}

export function tmpDir(prefix = 'esb-') {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

/** CPU time of a process so far (user + system), in microseconds. */
export function cpuUs(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  // fields after the command: state(3) ... utime(14) stime(15), counted from 1
  return ((Number(f[11]) + Number(f[12])) * 1e6) / CLK_TCK;
}

/**
 * CPU time of a process's living threads (scheduler run time, nanosecond resolution), in
 * microseconds: precise enough for a steady state of a few ms per second. Threads that have
 * exited are not counted: use cpuUs for whole runs.
 */
export function threadCpuUs(pid) {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* the thread ended meanwhile */
    }
  }
  return ns / 1000;
}

/** VmRSS and VmHWM (peak) of a process, in MiB (as top and ps show it). */
export function memMb(pid) {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(s)?.[1] ?? NaN);
  const rss = kb('VmRSS') / 1024;
  const hwm = kb('VmHWM') / 1024;
  // a process that has exited but not been reaped has no memory lines
  if (!Number.isFinite(rss)) throw new Error(`process ${pid} has exited`);
  return { rss, hwm };
}

/** Bytes the process caused to be written to storage (page cache writes included, as the kernel accounts them). */
export function writeBytes(pid) {
  const s = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/^write_bytes:\s+(\d+)/m.exec(s)[1]);
}

/**
 * Spawns a node script (optionally pinned to one core with taskset). Returns the child, its
 * output so far, and a promise of its exit. The pid is the node process itself (taskset execs).
 */
export function spawnNode(args, { pin, nodeFlags = [], env = {}, cwd } = {}) {
  const cmd = pin !== undefined ? 'taskset' : process.execPath;
  const argv = pin !== undefined ? ['-c', String(pin), process.execPath, ...nodeFlags, ...args] : [...nodeFlags, ...args];
  const child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out.length < 1e6 ? (out += d) : undefined));
  child.stderr.on('data', (d) => (err.length < 1e6 ? (err += d) : undefined));
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, pid: child.pid, out: () => out, err: () => err, exited, spawnedAt: performance.now() };
}

/** SIGTERM, then SIGKILL after a grace period. */
export async function stopChild(s, graceMs = 8000) {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return s.exited;
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), graceMs);
  const r = await s.exited;
  clearTimeout(t);
  return r;
}

/** Writes a daemon config (YAML is a superset of JSON). */
export function writeDaemonConfig(dir, cfg, name = 'config.yaml') {
  const p = join(dir, name);
  writeFileSync(p, JSON.stringify(cfg, null, 1));
  return p;
}

export function loadAvg() {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}
