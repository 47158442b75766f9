import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Database from 'better-sqlite3';
import { EmbeddedBroker } from '../src/demo/embedded-broker.js';
import { FleetWatcher } from '../src/watch/fleet-watcher.js';
import { formatWatchEvent } from '../src/cli/watch.js';
import { mosquittoForTests } from './helpers/mosquitto.js';
import { Ledger } from './helpers/subscriber.js';
import { makeTmp } from './helpers/tmp.js';
import { daemonConfig, sqlValue } from './helpers/daemon-config.js';
import { runCli, spawnCli, waitFor, type Spawned } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
const mosq = mosquittoForTests(join(tmp.dir, 'mosq'));

function config(name: string, url = mosq.url, extra: Record<string, unknown> = {}) {
  return daemonConfig(tmp.dir, name, {
    mqtt: { url, topicPrefix: 'cli' },
    sync: { batchSize: 50, maxInFlight: 2, intervalMs: 200, publishTimeoutMs: 2000, shutdownTimeoutMs: 1000, retry: { initialDelayMs: 100, maxDelayMs: 300, maxAttempts: 2 } },
    sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 10 }],
    ...extra,
  });
}

const q = sqlValue;
const synced = (db: string) => q(db, 'SELECT count(*) FROM transactions WHERE synced = 1');
const pending = (db: string) => q(db, 'SELECT count(*) FROM transactions WHERE synced = 0');

async function startDaemon(args: string[]): Promise<Spawned> {
  const d = spawnCli(['run', ...args]);
  await waitFor(() => d.logLines().some((l) => l.msg === 'sampling started'), 10_000, 'daemon started');
  return d;
}
async function stopDaemon(d: Spawned) {
  d.child.kill('SIGTERM');
  expect((await d.exited).code).toBe(0);
}

describe('CLI without a running daemon', () => {
  it('record stores a transaction at once; status shows one more pending', async () => {
    const c = config('rec');
    const r1 = await runCli(['record', ...c.args, '--amount', '12.5', '--description', 'coffee']);
    expect(r1.code).toBe(0);
    expect(r1.stdout).toMatch(/recorded seq 1/);
    // the first writer creates the database, as the daemon would, and says so
    expect(r1.stderr).toMatch(/created a new database at .*rec\.db/);
    const st1 = await runCli(['status', ...c.args, '--json']);
    expect(st1.stderr).toBe('');
    const s1 = JSON.parse(st1.stdout);
    const r2 = await runCli(['record', ...c.args, '--amount=-3', '--sensor', 'till', '--json']);
    expect(JSON.parse(r2.stdout)).toMatchObject({ seq: 2, sensor: 'till', amount: -3, description: null });
    const s2 = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(s2.pending).toBe(s1.pending + 1);
    expect(s2).toMatchObject({ daemon: { running: false }, mode: 'online', parked: 0, synced: 0 });
    expect(q(c.db, "SELECT count(*) FROM transactions WHERE description = 'coffee' AND amount = 12.5 AND sensor = 'manual'")).toBe(1);
    const human = await runCli(['status', ...c.args]);
    expect(human.stdout).toMatch(/pending\s+2/);
    expect(human.stdout).toMatch(/daemon\s+not running/);
  });

  it('record refuses a bad amount and changes nothing', async () => {
    const c = config('badamount');
    // hex, binary and octal were stored as their values (0x10 as 16): decimal only
    for (const amount of ['lots', '', 'NaN', '0x10', '0b11', '0o17', 'Infinity', '1_000']) {
      const r = await runCli(['record', ...c.args, '--amount', amount]);
      expect(r.code).toBe(64);
      expect(r.stderr).toMatch(/--amount expects a number/);
    }
    expect(existsSync(c.db)).toBe(false);
  });

  it('status and log on a missing or foreign database fail clearly and change nothing', async () => {
    const c = config('missing');
    const s = await runCli(['status', ...c.args]);
    expect(s.code).toBe(66);
    expect(s.stderr).toMatch(/no database at .*missing\.db/);
    expect((await runCli(['log', ...c.args])).code).toBe(66);
    // changing stored state needs a database to change: a mistyped --config makes nothing new
    for (const cmd of [['requeue', '--all', '--stored'], ['offline', '--stored'], ['online', '--stored']]) {
      const r = await runCli([...cmd, ...c.args]);
      expect(r.code).toBe(66);
      expect(r.stderr).toMatch(/no database at .*missing\.db/);
    }
    expect(existsSync(c.db)).toBe(false);
    expect(existsSync(dirname(c.db)) && readdirSync(dirname(c.db)).some((f) => f.startsWith('missing.db'))).toBe(false);

    const foreign = config('foreign');
    const f = new Database(foreign.db);
    f.exec('CREATE TABLE recipes (name TEXT)');
    f.close();
    const before = readFileSync(foreign.db);
    for (const cmd of [['status'], ['log'], ['record', '--amount', '1']]) {
      const r = await runCli([...cmd, ...foreign.args]);
      expect(r.code).toBe(65);
      expect(r.stderr).toMatch(/another application/);
    }
    expect(readFileSync(foreign.db).equals(before)).toBe(true);
  });

  it('commands that need the daemon say "daemon not running" (exit 69); --stored records the choice', async () => {
    const c = config('nodaemon');
    await runCli(['record', ...c.args, '--amount', '1']);
    for (const cmd of [['sync'], ['offline'], ['online'], ['requeue', '--all']]) {
      const r = await runCli([...cmd, ...c.args]);
      expect(r.code).toBe(69);
      expect(r.stderr).toMatch(/daemon not running/);
    }
    const r = await runCli(['offline', '--stored', ...c.args]);
    expect(r.code).toBe(0);
    expect(JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout).mode).toBe('offline-by-choice');
  });

  it('log --follow prints new events as they are written', async () => {
    const c = config('follow');
    await runCli(['record', ...c.args, '--amount', '1']);
    const f = spawnCli(['log', ...c.args, '--follow', '--json']);
    const { Store } = await import('../src/store/store.js');
    const s = new Store(c.db);
    s.logEvent('went_offline', { by: 'test' });
    await waitFor(() => f.stdout().includes('went_offline'), 5000, 'followed event');
    s.logEvent('went_online', { by: 'test' });
    await waitFor(() => f.stdout().includes('went_online'), 5000, 'second followed event');
    s.close();
    f.child.kill('SIGTERM');
    expect((await f.exited).code).toBe(0);
    const types = f.stdout().split('\n').filter(Boolean).map((l) => JSON.parse(l).event_type);
    expect(types).toEqual(['went_offline', 'went_online']);
  });

  it('every command has --help', async () => {
    for (const cmd of ['run', 'check-config', 'status', 'log', 'record', 'offline', 'online', 'sync', 'requeue', 'watch', 'demo']) {
      const r = await runCli([cmd, '--help']);
      expect(r.code, cmd).toBe(0);
      expect(r.stdout, cmd).toMatch(new RegExp(`usage: edge-sensor ${cmd}`));
    }
    const bad = await runCli(['status', '--colour']);
    expect(bad.code).toBe(64);
  });
});

describe('CLI beside a running daemon', () => {
  it('offline stops the PUBACKs, shows in status, survives a restart; online resumes at once', async () => {
    const c = config('mode');
    let d = await startDaemon(c.args);
    await waitFor(() => synced(c.db) > 0, 10_000, 'first rows synced');
    const off = await runCli(['offline', ...c.args]);
    expect(off.code).toBe(0);
    const s1 = synced(c.db);
    const p1 = pending(c.db);
    // two more ticks of readings: each would have been synced within sync.intervalMs (200 ms)
    await waitFor(() => pending(c.db) >= p1 + 20, 10_000, 'readings sampled while offline');
    expect(synced(c.db)).toBe(s1);
    const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(st).toMatchObject({ mode: 'offline-by-choice', daemon: { running: true, link: 'offline-by-choice' } });
    expect(st.pending).toBeGreaterThan(0);
    // the choice survives a restart
    await stopDaemon(d);
    const before = pending(c.db);
    d = await startDaemon(c.args);
    await waitFor(() => pending(c.db) >= before + 20, 10_000, 'readings sampled after the restart');
    expect(synced(c.db)).toBe(s1);
    expect(d.logLines().some((l) => /offline by choice/.test(String(l.msg)))).toBe(true);
    const on = await runCli(['online', ...c.args]);
    expect(on.code).toBe(0);
    expect(on.stdout).toMatch(/online: connected/);
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 0') <= 10, 5000, 'backlog drained after online');
    const log = (await runCli(['log', ...c.args, '--limit', '50'])).stdout;
    expect(log).toMatch(/went_offline/);
    expect(log).toMatch(/went_online/);
    await stopDaemon(d);
  });

  it('offline-by-choice on the (retained) status topic; online syncs at once, not at the next idle look', async () => {
    // an idle interval of an hour: rows that reach the broker soon after `online` were sent because of it
    const c = config('choice', mosq.url, { sync: { batchSize: 50, maxInFlight: 2, intervalMs: 3_600_000, publishTimeoutMs: 2000, shutdownTimeoutMs: 1000 } });
    const ledger = await Ledger.start(mosq.url, 'cli/choice/readings', { statusFilter: 'cli/choice/status' });
    const d = await startDaemon(c.args);
    await waitFor(() => ledger.statuses.some((m) => m.state === 'online'), 10_000, 'online status');
    const off = await runCli(['offline', ...c.args]);
    expect(off.code).toBe(0);
    await waitFor(() => ledger.statuses.some((m) => m.mode === 'offline-by-choice' && m.state === 'offline'), 5000, 'offline-by-choice status');
    // and it is what a subscriber that comes later is given (retained)
    const late = await Ledger.start(mosq.url, 'cli/none', { statusFilter: 'cli/choice/status', clientId: 'late-choice' });
    await waitFor(() => late.statuses.length > 0, 3000, 'retained status');
    expect(late.statuses[0]).toMatchObject({ state: 'offline', mode: 'offline-by-choice', reason: 'offline by choice', _retain: true });
    await late.stop();
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 0') >= 30, 10_000, 'backlog while offline');
    const on = await runCli(['online', ...c.args]);
    expect(on.code).toBe(0);
    // the backlog goes out at once, long before the hour-long idle interval
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 0') <= 10, 5000, 'backlog sent after online');
    const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(st).toMatchObject({ mode: 'online', daemon: { running: true, link: 'online' } });
    expect(q(c.db, "SELECT value FROM config WHERE key = 'mode'") as unknown).toBe('online');
    await stopDaemon(d);
    await ledger.stop();
  });

  it('online while an offline is still draining: the later command wins, the daemon does not end up paused', async () => {
    let hold = false;
    const broker = await new EmbeddedBroker().listen();
    broker.onPublish = (_c, p) => (hold && p.topic.endsWith('/readings') ? 'hold' : 'ack');
    const c = config('race', broker.url, { sync: { batchSize: 50, maxInFlight: 2, intervalMs: 200, publishTimeoutMs: 20_000, shutdownTimeoutMs: 3000 } });
    const d = await startDaemon(c.args);
    await waitFor(() => synced(c.db) > 0, 10_000, 'first rows synced');
    hold = true; // the next batch waits for its PUBACK, so `offline` drains for up to 3 s
    await waitFor(() => broker.held.length > 0, 5000, 'a batch in flight');
    const offline = runCli(['offline', ...c.args]);
    await waitFor(() => d.logLines().some((l) => String(l.msg).startsWith('going offline')), 10_000, 'offline draining (waiting for that PUBACK)');
    hold = false;
    const on = await runCli(['online', ...c.args]);
    expect(on.code).toBe(0);
    expect((await offline).code).toBe(0);
    // both answered; the later choice holds: connected again and syncing
    const before = synced(c.db);
    await waitFor(() => synced(c.db) > before, 10_000, 'syncing again after the later online');
    const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(st).toMatchObject({ mode: 'online', daemon: { running: true, link: 'online' } });
    await stopDaemon(d);
    await broker.close();
  });

  it('sync runs a cycle at once, skipping the idle wait, and reports what was acknowledged', async () => {
    const c = config('force', mosq.url, { sync: { batchSize: 50, intervalMs: 3_600_000, publishTimeoutMs: 2000 } });
    const d = await startDaemon(c.args);
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions') >= 20, 10_000, 'rows sampled');
    const before = synced(c.db);
    const r = await runCli(['sync', ...c.args, '--json']);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(true);
    expect(report.ackedRows).toBeGreaterThanOrEqual(20 - before);
    expect(synced(c.db)).toBeGreaterThanOrEqual(before + report.ackedRows);
    await stopDaemon(d);
  });

  it('sync reports why not when the broker is unreachable', async () => {
    const c = config('unreach', 'mqtt://127.0.0.1:1', { sync: { intervalMs: 200, retry: { initialDelayMs: 60_000, maxDelayMs: 60_000, maxAttempts: 2 } } });
    const d = await startDaemon(c.args);
    const r = await runCli(['sync', ...c.args, '--timeout', '1500']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/not synced: cannot reach broker: .*ECONNREFUSED/);
    const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(st.daemon.link).toBe('unreachable');
    await stopDaemon(d);
  });

  it('requeue puts parked rows back to pending', async () => {
    const broker = await new EmbeddedBroker().listen();
    let refuse = true;
    broker.onPublish = (_c, p) => (refuse && p.topic.endsWith('/readings') ? { reasonCode: 0x97 } : 'ack');
    const c = config('requeue', broker.url);
    const d = await startDaemon(c.args);
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE parked_at IS NOT NULL') >= 10, 15_000, 'rows parked');
    refuse = false;
    const parked = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout).parked;
    expect(parked).toBeGreaterThanOrEqual(10);
    // one by id first, then all
    const one = sqlValue(c.db, 'SELECT id FROM transactions WHERE parked_at IS NOT NULL ORDER BY seq LIMIT 1') as unknown as string;
    const r1 = await runCli(['requeue', '--ids', one, ...c.args, '--json']);
    expect(JSON.parse(r1.stdout).requeued).toBe(1);
    const r = await runCli(['requeue', '--all', ...c.args, '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).requeued).toBeGreaterThanOrEqual(parked - 1);
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE parked_at IS NOT NULL') === 0 && synced(c.db) >= parked, 10_000, 'requeued rows synced');
    await stopDaemon(d);
    await broker.close();
  });

  it('status beside a daemon writing fast neither blocks it nor fails with SQLITE_BUSY', async () => {
    const c = config('busy', mosq.url, { sensors: [{ type: 'simulated', name: 'sim', schedule: '* * * * * *', count: 5000 }] });
    const d = await startDaemon(c.args);
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions') > 0, 10_000, 'rows');
    for (let i = 0; i < 8; i++) {
      const r = await runCli(['status', ...c.args, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).daemon.running).toBe(true);
    }
    await stopDaemon(d);
    const stopped = d.logLines().find((l) => l.msg === 'stopped')!;
    expect(stopped.lost).toBe(0);
    expect(stopped.written as number).toBeGreaterThanOrEqual(10_000);
  });

  it('watch shows batches and status of every device, live', async () => {
    const c = config('watched', mosq.url, { state: { enabled: true } });
    const w = spawnCli(['watch', '--url', mosq.url, '--prefix', 'cli', '--json']);
    await waitFor(() => /watching/.test(w.stderr()), 5000, 'watch connected');
    const d = await startDaemon(c.args);
    await waitFor(() => w.stdout().includes('"type":"batch"') && w.stdout().includes('"type":"state"'), 10_000, 'a batch and live values seen');
    await stopDaemon(d);
    await waitFor(() => w.stdout().includes('"reason":"shutdown"'), 5000, 'offline status seen');
    w.child.kill('SIGTERM');
    await w.exited;
    const events = w
      .stdout()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const batches = events.filter((e) => e.type === 'batch' && e.device === 'watched');
    expect(batches.length).toBeGreaterThan(0);
    expect(batches[0]).toMatchObject({ rows: expect.any(Number), firstSeq: expect.any(Number), duplicates: 0 });
    expect(events.some((e) => e.type === 'status' && e.status.state === 'online')).toBe(true);
    // the live values too
    expect(events.find((e) => e.type === 'state' && e.device === 'watched')).toMatchObject({ values: [{ name: 'sim', value: expect.any(Number), ageMs: expect.any(Number) }] });
  });

  it('demo runs the whole loop with its embedded broker, driven through standard input', async () => {
    const input = ['2', '1', '42.5', 'coffee', '3', '4', '2', '3', '5', 'quit'].join('\n') + '\n';
    const r = await runCli(['demo'], {}, input, 40_000);
    expect(r.code).toBe(0);
    const out = r.stdout;
    expect(out).toMatch(/OFFLINE by choice/);
    expect(out).toMatch(/recorded transaction seq \d+: 42.5 "coffee"/);
    expect(out).toMatch(/sync not possible: offline by choice/);
    expect(out).toMatch(/pending\s+\d+/);
    expect(out).toMatch(/ONLINE: reconnected/);
    expect(out).toMatch(/\[broker\] received \d+ readings? from demo .*"coffee" 42.5/);
    expect(out).toMatch(/went_offline/);
    expect(out).toMatch(/stopping the demo daemon/);
    expect(out).toMatch(/temporary database removed/);
  });

  it('demo: Ctrl-C quits like q (clean stop, temporary folder removed)', async () => {
    const d = spawnCli(['demo']);
    await waitFor(() => /database\s+(\S+)demo\.db/.test(d.stdout()) && /choice> $/.test(d.stdout()), 20_000, 'demo menu');
    const dir = dirname(/database\s+(\S+demo\.db)/.exec(d.stdout())![1]);
    expect(existsSync(dir)).toBe(true);
    d.child.kill('SIGINT');
    expect(await d.exited).toEqual({ code: 0, signal: null });
    expect(d.stdout()).toMatch(/stopping the demo daemon/);
    expect(existsSync(dir)).toBe(false);
  });
});

describe('fleet watcher', () => {
  const batch = (device: string, seqs: number[], ts = new Date().toISOString()) => ({
    device,
    batch: 'b',
    readings: seqs.map((seq) => ({ id: `${device}-${seq}`, seq, ts, sensor: 's', value: 1, unit: null })),
  });
  it('flags duplicates and seq gaps per device, and closes gaps when late readings arrive', () => {
    const w = new FleetWatcher(() => 1000);
    expect(w.batch('a', batch('a', [1, 2, 3]))).toMatchObject({ rows: 3, duplicates: 0, newGaps: [] });
    expect(w.batch('b', batch('b', [100, 101]))).toMatchObject({ duplicates: 0, newGaps: [] });
    expect(w.batch('a', batch('a', [2, 3, 4]))).toMatchObject({ duplicates: 2 });
    expect(w.batch('a', batch('a', [8, 9]))).toMatchObject({ newGaps: [[5, 7]], openGapReadings: 3 });
    expect(w.batch('a', batch('a', [5, 6]))).toMatchObject({ filled: 2, openGapReadings: 1 });
    expect(w.dropped('a', [[7, 7]], 'disk cap')).toMatchObject({ count: 1 });
    expect(w.batch('a', batch('a', [10]))).toMatchObject({ openGapReadings: 0, newGaps: [] });
  });

  it("prints one line per event an operator can read: state, backlog, seq range, delay, duplicates, gaps, drops", () => {
    const w = new FleetWatcher(() => Date.parse('2026-11-26T10:00:05.000Z'));
    const ts = '2026-11-26T10:00:04.250Z';
    const lines = [
      formatWatchEvent(w.status('pi-kitchen', { state: 'online', pending: 4, parked: 0, syncedTotal: 10, lostTotal: 0 })),
      formatWatchEvent(w.batch('pi-kitchen', batch('pi-kitchen', [1, 2, 3], ts))),
      formatWatchEvent(w.batch('pi-kitchen', batch('pi-kitchen', [3, 6], ts))),
      formatWatchEvent(w.dropped('pi-kitchen', [[4, 5]], 'database cap')),
      formatWatchEvent(w.status('pi-kitchen', { state: 'offline', reason: 'connection lost' })),
    ];
    expect(lines[0]).toMatch(/pi-kitchen\s+status\s+ONLINE\s+pending 4\s+parked 0\s+syncedTotal 10\s+lostTotal 0$/);
    expect(lines[1]).toMatch(/batch\s+3 readings\s+seq 1-3\s+delay 750 ms$/);
    expect(lines[2]).toMatch(/seq 3-6 .*DUPLICATES 1\s+GAP 4-5/);
    expect(lines[3]).toMatch(/DROPPED 2 readings on the device \(database cap\): seq 4-5/);
    expect(lines[4]).toMatch(/status\s+OFFLINE \(connection lost\)$/);
    for (const l of lines) expect(l).toMatch(/^\d\d:\d\d:\d\d\.\d{3}  /);
  });

  it('prints live values from the state message, every device-sent string made printable', () => {
    const w = new FleetWatcher(() => Date.parse('2026-11-26T10:00:05.000Z'));
    const line = formatWatchEvent(
      w.live('pi-kitchen', {
        'sim-temp': { value: 21.5, unit: '°C', ts: '2026-11-26T10:00:04.500Z' },
        'evil\u001b[2J': { value: '\u001b]0;owned\u0007', unit: '\u202e%', ts: '2026-11-26T09:00:00.000Z' },
        cold: { value: null, unit: null, ts: null },
      }),
    );
    expect(line).toMatch(/pi-kitchen\s+state\s+sim-temp 21.5 °C  evil\\u\{1b\}\[2J \\u\{1b\}\]0;owned\\u\{7\} \\u\{202e\}%  cold -  \(oldest 60.1 min old\)$/);
    expect(line).not.toMatch(/[\u0000-\u001f\u202e]/);
    expect(formatWatchEvent(w.live('x', [1, 2]))).toMatch(/unreadable message: state message is not a JSON object/);
    const many = w.live('x', Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`s${i}`, { value: i, unit: null, ts: null }])));
    expect(formatWatchEvent(many)).toMatch(/\(\+60 more\)$/);
  });
});

describe('control socket', () => {
  it('is owner/group only, and a second daemon on the same database refuses to start', async () => {
    const c = config('single', mosq.url);
    const d = await startDaemon(c.args);
    expect(statSync(`${c.db}.sock`).mode & 0o777).toBe(0o660);
    const second = await runCli(['run', ...c.args], {}, undefined, 15_000);
    expect(second.code).toBe(1);
    expect(second.stdout).toMatch(/already running/);
    // the first one still answers
    expect((await runCli(['status', ...c.args, '--json'])).code).toBe(0);
    await stopDaemon(d);
    expect(existsSync(`${c.db}.sock`)).toBe(false);
    // a socket file left by a killed daemon does not stop the next start
    const k = await startDaemon(c.args);
    k.child.kill('SIGKILL');
    await k.exited;
    expect(existsSync(`${c.db}.sock`)).toBe(true);
    const again = await startDaemon(c.args);
    await stopDaemon(again);
  });
});
