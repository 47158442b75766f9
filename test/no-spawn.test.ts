import { afterAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeTmp, writeConfig } from './helpers/tmp.js';
import { CLI, waitFor } from './helpers/process.js';
import { GET_THROTTLED, addIioDevices, addThermalZone, addThermometer, put, w1Slave } from './helpers/fake-sysfs.js';

// The proof that sampling spawns nothing: strace -f records every execve of the daemon and of
// any descendant (shells of systeminformation, vcgencmd, a node-cron fork). CI installs strace.
const tmp = makeTmp();
const running = new Set<number>();
afterAll(() => {
  // a failed test must not leave a daemon sampling behind it
  for (const pid of running) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  tmp.cleanup();
});

const hasStrace = spawnSync('strace', ['-V']).status === 0;

/** Runs `node ARGS` under strace; returns the execve lines once it exits, and the pid to signal. */
function traced(args: string[]) {
  const out = join(tmp.dir, `trace-${Math.random().toString(36).slice(2)}`);
  const child = spawn('strace', ['-f', '-qq', '--seccomp-bpf', '-e', 'trace=execve', '-o', out, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.stdout!.resume();
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  const execs = () =>
    readFileSync(out, 'utf8')
      .split('\n')
      .filter((l) => /\bexecve\(/.test(l));
  // the traced program's pid is the first line's (strace -f prefixes every line with it)
  const pid = () => Number(/^(\d+) /.exec(execs()[0] ?? '')?.[1]);
  return { exited, execs, pid, stderr: () => stderr };
}

describe('sampling spawns no process on Linux', () => {
  it.runIf(process.platform === 'linux')('strace sees the execve of a child process (the method works)', async () => {
    expect(hasStrace, 'strace is needed (apt-get install strace)').toBe(true);
    const t = traced(['-e', "require('node:child_process').execFileSync('/bin/true')"]);
    expect(await t.exited).toBe(0);
    expect(t.execs()).toHaveLength(2);
  });

  it.runIf(process.platform === 'linux')('host sensors and Pi file sensors, every second: no execve beyond the daemon itself', async () => {
    expect(hasStrace, 'strace is needed (apt-get install strace)').toBe(true);
    const sys = join(tmp.dir, 'sys');
    addThermalZone(sys, 0, 'cpu-thermal', 48312); // this VM has none; a Pi has this one
    addThermometer(sys, '28-0316a2797aff', w1Slave(21562));
    addIioDevices(sys);
    put(join(sys, GET_THROTTLED), '0\n');
    const db = join(tmp.dir, 'spawn.db');
    const every = '* * * * * *';
    const cfg = writeConfig(tmp.dir, {
      device: { id: 'nospawn' },
      database: { path: db },
      mqtt: { url: 'mqtt://127.0.0.1:1' }, // nowhere: syncing fails and retries, sampling goes on
      host: { procRoot: '/proc', sysRoot: sys },
      sensors: [
        { type: 'cpu-temperature', name: 'cpu-temp', schedule: every },
        { type: 'cpu-load', name: 'cpu-load', schedule: every },
        { type: 'memory', name: 'mem', schedule: every },
        { type: 'disk', name: 'disk', schedule: every, mount: '/' },
        { type: 'ds18b20', name: 'w1', schedule: every },
        { type: 'iio', name: 'env', schedule: every, device: 'bme280' },
        { type: 'pi-throttled', name: 'power', schedule: every },
      ],
      log: { level: 'warn' },
    });
    const t = traced([CLI, 'run', '--config', cfg]);
    await waitFor(() => t.pid() > 0, 10_000, 'the daemon under strace');
    const pid = t.pid();
    running.add(pid);
    void t.exited.then(() => running.delete(pid));
    const counts = () => {
      try {
        const d = new Database(db, { readonly: true, fileMustExist: true });
        try {
          return Object.fromEntries((d.prepare('SELECT sensor, count(*) AS n FROM transactions GROUP BY sensor').all() as Array<{ sensor: string; n: number }>).map((r) => [r.sensor, r.n]));
        } finally {
          d.close();
        }
      } catch {
        return {} as Record<string, number>;
      }
    };
    const sensors = ['cpu-temp', 'cpu-load', 'mem', 'disk', 'w1.28-0316a2797aff', 'env.temperature', 'env.humidity', 'env.pressure', 'power'];
    // three ticks of every sensor
    await waitFor(() => sensors.every((s) => (counts()[s] ?? 0) >= 3), 20_000, `3 readings of each sensor (${t.stderr()})`);
    process.kill(pid, 'SIGTERM');
    expect(await t.exited).toBe(0);
    const execs = t.execs();
    expect(execs[0]).toContain(process.execPath);
    expect(execs.slice(1), 'programs executed while sampling').toEqual([]);
    expect(counts()['env.pressure']).toBeGreaterThanOrEqual(3);
  });
});
