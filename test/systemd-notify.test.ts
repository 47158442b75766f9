import { afterAll, describe, expect, it, vi } from 'vitest';
import { EventEmitter } from 'node:events';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { SystemdNotifier, watchdogPingMs, type SpawnFn } from '../src/systemd/notifier.js';
import { statusLine } from '../src/systemd/status-line.js';
import { createLogger } from '../src/util/logger.js';
import { makeTmp, writeConfig } from './helpers/tmp.js';
import { spawnCli, waitFor } from './helpers/process.js';
import { FakeNotifySocket } from './helpers/notify-socket.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

function captureLogger() {
  const lines: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { lines, log: createLogger('debug', stream) };
}

/** A spawn stand-in whose children exit only when the test says so. */
function fakeSpawn() {
  const calls: string[][] = [];
  const children: EventEmitter[] = [];
  const spawn: SpawnFn = (_cmd, args) => {
    calls.push(args);
    const child = Object.assign(new EventEmitter(), { kill: () => true });
    children.push(child);
    return child as unknown as ChildProcess;
  };
  const exit = (i: number, code = 0) => children[i].emit('close', code, null);
  return { calls, spawn, exit };
}

const hasSystemdNotify = (() => {
  try {
    execFileSync('systemd-notify', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('SystemdNotifier', () => {
  it('spawns nothing when NOTIFY_SOCKET is absent', () => {
    vi.useFakeTimers();
    try {
      const f = fakeSpawn();
      const n = new SystemdNotifier(captureLogger().log, { env: { WATCHDOG_USEC: '20000' }, spawn: f.spawn, statusIntervalMs: 5 });
      expect(n.enabled).toBe(false);
      n.ready('ready');
      n.status('x');
      n.startHeartbeat(() => 'y');
      vi.advanceTimersByTime(50); // ten heartbeat periods
      n.stopping('bye');
      n.close();
      expect(f.calls).toEqual([]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('applies the watchdog only to the process systemd named', () => {
    expect(watchdogPingMs({ WATCHDOG_USEC: '30000000' })).toBe(15_000);
    expect(watchdogPingMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '123' }, 123)).toBe(15_000);
    expect(watchdogPingMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '124' }, 123)).toBeUndefined();
    expect(watchdogPingMs({})).toBeUndefined();
    expect(watchdogPingMs({ WATCHDOG_USEC: 'soon' })).toBeUndefined();
  });

  it('runs one sender at a time and merges what comes meanwhile, the latest STATUS winning', () => {
    const f = fakeSpawn();
    const n = new SystemdNotifier(captureLogger().log, { env: { NOTIFY_SOCKET: '/run/x' }, spawn: f.spawn });
    n.ready('starting');
    n.status('a');
    n.status('b');
    n.stopping('bye', 15_000);
    expect(f.calls).toEqual([['READY=1', 'STATUS=starting']]);
    f.exit(0);
    expect(f.calls[1]).toEqual(['STATUS=bye', 'STOPPING=1', 'EXTEND_TIMEOUT_USEC=15000000']);
    f.exit(1);
    // an unchanged status is not sent again
    n.status('bye');
    expect(f.calls).toHaveLength(2);
  });

  it('pings the watchdog and refreshes the status on one tick, and only pings once stopping', () => {
    vi.useFakeTimers();
    try {
      const f = fakeSpawn();
      // WATCHDOG_USEC 60 ms: a tick every 30 ms
      const n = new SystemdNotifier(captureLogger().log, { env: { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '60000' }, spawn: f.spawn });
      let pending = 0;
      n.startHeartbeat(() => `online, ${pending} pending`);
      vi.advanceTimersByTime(29);
      expect(f.calls).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(f.calls).toEqual([['WATCHDOG=1', 'STATUS=online, 0 pending']]);
      f.exit(0);
      vi.advanceTimersByTime(30);
      expect(f.calls[1]).toEqual(['WATCHDOG=1']);
      f.exit(1);
      pending = 3;
      n.stopping('stopping');
      f.exit(2);
      vi.advanceTimersByTime(30);
      f.exit(3);
      vi.advanceTimersByTime(30);
      n.close();
      vi.advanceTimersByTime(300);
      expect(f.calls.slice(2)).toEqual([['STOPPING=1', 'STATUS=stopping'], ['WATCHDOG=1'], ['WATCHDOG=1']]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('survives a missing systemd-notify with one warning', async () => {
    const { lines, log } = captureLogger();
    const n = new SystemdNotifier(log, { env: { NOTIFY_SOCKET: join(tmp.dir, 'none.sock') }, command: join(tmp.dir, 'no-such-notify') });
    const warnings = () => lines.filter((l) => l.msg === 'cannot notify systemd');
    n.ready('r');
    n.status('s1'); // waits for the first sender, which fails
    await waitFor(() => n.sent >= 2 && warnings().length > 0, 5000, 'the first failure');
    // s2 goes out only once the sender of s1 is done: by then s1 has failed too
    n.status('s2');
    await waitFor(() => n.sent >= 3, 5000, 'the second failure');
    expect(warnings()).toHaveLength(1);
    const [warning] = warnings();
    expect(String(warning.err)).toMatch(/ENOENT/);
    expect(n.sent).toBeGreaterThanOrEqual(2);
  });
});

describe('statusLine', () => {
  it('shows the link and the backlog', () => {
    const view = (link: string, pending: number, oldestPendingAgeMs: number | null, parked = 0) => ({
      linkView: () => link,
      statusPayload: () => ({ pending, oldestPendingAgeMs, parked }),
    });
    expect(statusLine(view('online', 2, 1500))).toBe('online, 2 pending');
    expect(statusLine(view('unreachable', 1520, 9_000_000, 3))).toBe('unreachable, 1520 pending (oldest 2.5 h), 3 parked');
  });
});

describe.skipIf(!hasSystemdNotify)('the daemon under a fake NOTIFY_SOCKET', () => {
  function config(name: string, extra: Record<string, unknown> = {}) {
    return writeConfig(
      tmp.dir,
      {
        device: { id: name },
        database: { path: join(tmp.dir, `${name}.db`) },
        mqtt: { url: 'mqtt://127.0.0.1:1' },
        sensors: [{ type: 'simulated', name: 'sim', schedule: '* * * * * *' }],
        ...extra,
      },
      `${name}.yaml`,
    );
  }

  it('says READY once sampling runs, pings the watchdog at half its interval with STATUS, and STOPPING on SIGTERM', async () => {
    const sock = await new FakeNotifySocket(tmp.dir, 'ready.sock').start();
    try {
      const d = spawnCli(['run', '--config', config('ready')], { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '1000000', LOG_LEVEL: 'info' });
      await waitFor(() => sock.messages().filter((m) => m.fields.WATCHDOG === '1').length >= 4, 15_000, 'four watchdog pings');
      const logs = d.logLines();
      const at = (msg: string) => logs.find((l) => l.msg === msg)?.time as number;
      const [first, ...rest] = sock.messages();
      expect(first.fields.READY).toBe('1');
      expect(first.fields.STATUS).toMatch(/^(connecting|unreachable), \d+ pending$/);
      expect(rest.every((m) => m.fields.READY === undefined)).toBe(true);
      // READY comes after the database is open and the sampler started, never before
      expect(first.t).toBeGreaterThanOrEqual(at('database open'));
      expect(first.t).toBeGreaterThanOrEqual(at('sampling started'));

      const pings = sock.messages().filter((m) => m.fields.WATCHDOG === '1');
      const gaps = pings.slice(1).map((p, i) => p.t - pings[i].t);
      const median = gaps.sort((a, b) => a - b)[Math.floor(gaps.length / 2)];
      expect(median).toBeGreaterThan(300);
      expect(median).toBeLessThan(900);
      // the backlog grows (no broker) and STATUS follows it
      expect(sock.messages().some((m) => /^unreachable, [1-9]\d* pending$/.test(m.fields.STATUS ?? ''))).toBe(true);

      d.child.kill('SIGTERM');
      const { code } = await d.exited;
      expect(code).toBe(0);
      const stopping = sock.messages().find((m) => m.fields.STOPPING === '1');
      expect(stopping?.fields.STATUS).toMatch(/^stopping \(SIGTERM\)/);
      expect(Number(stopping?.fields.EXTEND_TIMEOUT_USEC)).toBeGreaterThan(5_000_000);
    } finally {
      sock.stop();
    }
  });

  it('never says READY on an invalid configuration (78) or a database of another program (65)', async () => {
    const sock = await new FakeNotifySocket(tmp.dir, 'bad.sock').start();
    try {
      const bad = spawnCli(['run', '--config', config('bad', { sync: { batchSize: 'many' } })], { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '1000000' });
      expect((await bad.exited).code).toBe(78);
      const foreign = new Database(join(tmp.dir, 'foreign.db'));
      foreign.exec('CREATE TABLE other (x)');
      foreign.close();
      const f = spawnCli(['run', '--config', config('foreign')], { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '1000000' });
      expect((await f.exited).code).toBe(65);
      // a message of our own: once the socket has it, it has whatever was sent before it
      execFileSync('systemd-notify', ['STATUS=marker'], { env: { ...process.env, NOTIFY_SOCKET: sock.path } });
      await waitFor(() => sock.messages().length > 0, 5000, 'the marker');
      expect(sock.messages().map((m) => m.fields)).toEqual([{ STATUS: 'marker' }]);
    } finally {
      sock.stop();
    }
  });
});
