import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { Mosquitto } from '../helpers/mosquitto.js';
import { FaultProxy } from '../helpers/proxy.js';
import { FakeNotifySocket } from '../helpers/notify-socket.js';
import { CLI, runCli, track, waitFor, type Spawned } from '../helpers/process.js';
import { testSchema } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { AckTap, collectorConfig, FakeDevice, range, readingsPayload, startCollector, stopCollector, killLeftovers } from './helpers.js';

const tmp = makeTmp('es-col-');
let mosq: Mosquitto;
beforeAll(async () => {
  mosq = await Mosquitto.start(join(tmp.dir, 'mosq'));
});
afterAll(async () => {
  await killLeftovers();
  await mosq?.stop();
  tmp.cleanup();
});

const after: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const f of after.splice(0).reverse()) await f().catch(() => {});
});

/** A schema, a collector config on it and a topic prefix of the test's own. */
async function setup(name: string, o: { url?: string; protocolVersion?: 4 | 5; extra?: Record<string, unknown> } = {}) {
  const s = await testSchema(name.replace(/-/g, '_'));
  after.push(s.cleanup);
  const prefix = `c-${name}`;
  const files = collectorConfig(tmp.dir, name, { url: o.url ?? mosq.url, pgUrl: s.url, schema: s.schema, prefix, protocolVersion: o.protocolVersion, extra: o.extra });
  const run = async () => {
    const p = await startCollector(files);
    after.push(() => stopCollector(p));
    return p;
  };
  const device = async (id: string, v: 4 | 5 = 5) => {
    const d = await FakeDevice.connect(mosq.url, id, prefix, v);
    after.push(() => d.end());
    return d;
  };
  const count = async (device: string) => Number((await s.q<{ n: string }>('SELECT count(*) AS n FROM readings WHERE device = $1', [device]))[0].n);
  return { ...s, files, prefix, run, device, count };
}

describe('edge-sensor collect', () => {
  it('sends a PUBACK only after the transaction holding the message committed', async () => {
    const proxy = await new FaultProxy(mosq.port).listen();
    after.push(() => proxy.close());
    const tap = new AckTap().attach(proxy);
    const s = await setup('ack', { url: proxy.url, extra: { postgres: { lockTimeoutMs: 60_000 } } });
    await s.run();
    const dev = await s.device('pi-1');
    await dev.readings(range(1, 10));
    await waitFor(async () => (await s.count('pi-1')) === 10, 10_000, 'first batch stored');
    await waitFor(() => tap.acks.length >= 1, 5000, 'its PUBACK');
    // another session holds the device's row: the collector's next transaction waits for it
    const blocker = new pg.Client({ connectionString: s.url });
    await blocker.connect();
    after.push(() => blocker.end());
    await blocker.query('BEGIN');
    await blocker.query(`SELECT 1 FROM ${s.schema}.devices WHERE device = 'pi-1' FOR UPDATE`);
    await dev.readings(range(11, 20));
    await waitFor(async () => (await s.q("SELECT 1 FROM pg_stat_activity WHERE application_name = 'edge-sensor-collector' AND wait_event_type = 'Lock'")).length === 1, 10_000, 'the collector waiting on the lock');
    expect(tap.delivered).toHaveLength(2);
    // delivered to the collector, its transaction open: no PUBACK, nothing stored
    expect(tap.acks).toHaveLength(1);
    expect(await s.count('pi-1')).toBe(10);
    await blocker.query('COMMIT');
    await waitFor(() => tap.acks.length === 2, 10_000, 'the second PUBACK');
    expect(await s.count('pi-1')).toBe(20);
  });

  it('records every kind of bad message with its reason and acknowledges it; good messages before and after are stored', async () => {
    const proxy = await new FaultProxy(mosq.port).listen();
    after.push(() => proxy.close());
    const tap = new AckTap().attach(proxy);
    const s = await setup('bad', { url: proxy.url, extra: { limits: { maxMessageBytes: 20_000, rejectedPayloadBytes: 100 } } });
    const col = await s.run();
    const dev = await s.device('pi-1');
    await dev.readings(range(1, 10));
    await dev.raw('readings', 'not json at all');
    await dev.raw('readings', readingsPayload('intruder', range(11, 20)));
    await dev.raw('readings', readingsPayload('pi-1', range(11, 200)));
    await dev.raw('readings', JSON.stringify({ device: 'pi-1', batch: 'x', readings: [] }));
    await dev.readings(range(5, 7), { variant: 9 });
    await dev.raw('dropped', JSON.stringify({ device: 'pi-1', ranges: [[9, 3]] }));
    await dev.readings(range(11, 20));
    const want = { 'invalid-json': 1, 'device-mismatch': 1, 'too-large': 1, contract: 2, 'conflicting-duplicate': 1 };
    await waitFor(async () => (await s.q('SELECT 1 FROM rejected_messages')).length === 6 && (await s.count('pi-1')) === 20, 15_000, 'six rejections and twenty readings');
    const rows = await s.q<{ reason: string; topic: string; device: string; payload: Buffer; payload_bytes: number }>('SELECT reason, topic, device, payload, payload_bytes FROM rejected_messages ORDER BY id');
    const byReason: Record<string, number> = {};
    for (const r of rows) byReason[r.reason] = (byReason[r.reason] ?? 0) + 1;
    expect(byReason).toEqual(want);
    expect(rows.every((r) => r.device === 'pi-1' && r.topic.startsWith(`${s.prefix}/pi-1/`) && r.payload.length <= 100)).toBe(true);
    expect(rows.find((r) => r.reason === 'too-large')!.payload_bytes).toBeGreaterThan(20_000);
    // (ids follow commit order, not arrival: two transactions may be in flight)
    expect(rows.find((r) => r.reason === 'invalid-json')!.payload.toString()).toBe('not json at all');
    // the spoofed readings were not stored under either name
    expect(await s.count('intruder')).toBe(0);
    // every message was acknowledged: none will come back
    await waitFor(() => tap.acks.length === 8, 5000, 'eight PUBACKs');
    expect(col.child.exitCode).toBeNull();
    const d = (await s.q('SELECT readings_stored::int, rejected_messages::int FROM devices WHERE device = $1', ['pi-1']))[0];
    expect(d).toEqual({ readings_stored: 20, rejected_messages: 6 });
  });

  it('stores a batch published twice once and counts the copy; understands gzip', async () => {
    const s = await setup('dup');
    await s.run();
    const dev = await s.device('pi-2');
    const batch = '11111111-2222-4333-8444-555555555555';
    await dev.readings(range(1, 50), { batch });
    await dev.readings(range(1, 50), { batch });
    await dev.readings(range(51, 100), { gzip: true });
    await waitFor(async () => (await s.q('SELECT duplicates_absorbed::int AS d FROM devices'))[0]?.d === 50 && (await s.count('pi-2')) === 100, 10_000, 'duplicates absorbed');
    expect((await s.q('SELECT count(DISTINCT seq)::int AS n FROM readings'))[0].n).toBe(100);
  });

  it('an announced drop is a dropped gap, readings that never come an open one; fleet shows them, device names printable', async () => {
    const s = await setup('gaps');
    await s.run();
    // Mosquitto refuses control characters in topics; other brokers may not: both kinds shown escaped
    const evil = 'evil\u202egnp.exe\u200b';
    const dev = await s.device('pi-3');
    const bad = await s.device(evil);
    await dev.raw('status', JSON.stringify({ device: 'pi-3', state: 'online', pending: 42, ts: new Date().toISOString() }), true);
    await dev.readings(range(1, 100));
    await dev.readings(range(151, 200));
    await dev.raw('dropped', JSON.stringify({ device: 'pi-3', ranges: [[101, 120]], count: 20, reasons: ['database cap'], ts: new Date().toISOString() }));
    await bad.readings(range(1, 5));
    await waitFor(async () => (await s.q("SELECT 1 FROM gaps WHERE state = 'dropped'")).length === 1 && (await s.count(evil)) === 5, 10_000, 'the drop recorded');
    expect(await s.q("SELECT from_seq::int, to_seq::int, state, reason FROM gaps WHERE device = 'pi-3' ORDER BY from_seq")).toEqual([
      { from_seq: 101, to_seq: 120, state: 'dropped', reason: 'database cap' },
      { from_seq: 121, to_seq: 150, state: 'open', reason: null },
    ]);
    const json = await runCli(['fleet', ...s.files.args, '--json']);
    expect(json.code).toBe(0);
    const f = JSON.parse(json.stdout);
    expect(f.devices.find((d: { device: string }) => d.device === 'pi-3')).toMatchObject({
      state: 'online',
      readingsStored: 150,
      pending: 42,
      openGaps: { ranges: 1, readings: 30 },
      droppedAnnounced: 20,
      through: 120,
      lagMs: expect.any(Number),
    });
    expect(f.devices.map((d: { device: string }) => d.device)).toContain(evil);
    // the terminal gets no escape sequence, in text or JSON
    const text = await runCli(['fleet', ...s.files.args]);
    for (const out of [text.stdout, json.stdout]) expect(out).not.toMatch(/[\u202e\u200b]/);
    expect(text.stdout).toMatch(/^pi-3\s+online\s.*\s1 \(30 readings\)\s+20\s+0\s+≤ 120\s+-$/m);
    expect(text.stdout).toContain('evil\\u202egnp.exe\\u200b');
    const gaps = await runCli(['fleet', ...s.files.args, '--gaps', 'pi-3']);
    expect(gaps.stdout).toMatch(/^101-120\s+20 readings\s+dropped/m);
    expect(gaps.stdout).toMatch(/^121-150\s+30 readings\s+open/m);
    expect((await runCli(['fleet', ...s.files.args, '--gaps', 'nobody'])).code).toBe(66);
  });

  it('MQTT 3.1.1: keeps its session across a restart, reads gzip by its magic bytes, acknowledges after the commit', async () => {
    const s = await setup('v4', { protocolVersion: 4 });
    const first = await s.run();
    const dev = await s.device('pi-4', 4);
    await dev.readings(range(1, 20), { gzip: true });
    await waitFor(async () => (await s.count('pi-4')) === 20, 10_000, 'stored');
    expect(await stopCollector(first)).toBe(0);
    // published while the collector is away: kept by the broker for its session
    await dev.readings(range(21, 40));
    await s.run();
    await waitFor(async () => (await s.count('pi-4')) === 40, 10_000, 'stored after the restart');
    expect((await s.q("SELECT count(*)::int AS n FROM gaps WHERE state = 'open'"))[0].n).toBe(0);
  });

  it('tells systemd: READY=1, watchdog pings with a STATUS line, STOPPING=1 on SIGTERM', async () => {
    const sock = await new FakeNotifySocket(tmp.dir, 'col.sock').start();
    after.push(async () => sock.stop());
    const s = await setup('notify');
    const col = await startCollector(s.files, { NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '1000000' });
    const dev = await s.device('pi-n');
    await dev.readings(range(1, 30));
    // STATUS= goes out with a watchdog ping when it changed
    const line = () => sock.messages().find((m) => /30 readings stored/.test(m.fields.STATUS ?? ''));
    await waitFor(() => line() && sock.messages().filter((m) => m.fields.WATCHDOG === '1').length >= 2, 15_000, 'pings and a STATUS line with the readings stored');
    expect(sock.messages()[0].fields.READY).toBe('1');
    expect(line()!.fields.STATUS).toMatch(/^broker connected, database up; 30 readings stored/);
    expect(await stopCollector(col)).toBe(0);
    expect(sock.messages().some((m) => m.fields.STOPPING === '1')).toBe(true);
  });

  it('runs with the node flags of the edge-sensor command (--lite-mode: no WebAssembly)', async () => {
    const flags = readFileSync(CLI, 'utf8').split('\n', 1)[0].split(/\s+/).filter((f) => f.startsWith('--'));
    expect(flags).toContain('--lite-mode');
    const s = await setup('lite');
    const p = track(spawn(process.execPath, [...flags, CLI, 'collect', ...s.files.args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    after.push(async () => {
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    });
    let out = '';
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (out += d));
    await waitFor(() => out.includes('"subscribed"'), 20_000, `collector under ${flags.join(' ')}: ${out}`);
    const dev = await s.device('pi-lite');
    await dev.readings(range(1, 5));
    await waitFor(async () => (await s.count('pi-lite')) === 5, 10_000, 'stored');
    const fleet = spawnSync(process.execPath, [...flags, CLI, 'fleet', ...s.files.args, '--json'], { encoding: 'utf8' });
    expect(fleet.status).toBe(0);
    expect(JSON.parse(fleet.stdout).devices[0]).toMatchObject({ device: 'pi-lite', readingsStored: 5 });
  });

  it('takes the connection from PG* environment variables when postgres.url is unset', async () => {
    const s = await setup('pgenv');
    await stopCollector(await s.run());
    const file = join(tmp.dir, 'pgenv.yaml');
    writeFileSync(file, `postgres: { schema: ${s.schema} }\nmqtt: { topicPrefix: ${s.prefix} }\n`);
    const u = new URL(s.url);
    const env = { PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: decodeURIComponent(u.username), PGDATABASE: u.pathname.slice(1) };
    const r = await runCli(['fleet', '--config', file, '--json'], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).devices).toEqual([]);
    expect((await runCli(['fleet', '--config', file], { ...env, PGPORT: '1' })).code).toBe(69);
  });

  it('refuses a config with every problem listed (exit 78), and a database with newer tables (exit 65)', async () => {
    const bad = join(tmp.dir, 'bad-collector.yaml');
    writeFileSync(bad, 'mqtt: { url: "http://x", shareGroup: "a/b", receiveMaximum: 0 }\npostgres: { url: "postgres://u:secret@h/db", password: "x", schema: "Bad-Name" }\nbogus: 1\n');
    const r = await runCli(['collect', '--config', bad]);
    expect(r.code).toBe(78);
    for (const path of ['mqtt.url', 'mqtt.shareGroup', 'mqtt.receiveMaximum', 'postgres.url', 'postgres.password', 'postgres.schema', 'bogus']) expect(r.stderr).toContain(`  - ${path}:`);
    expect(r.stderr).not.toContain('secret');
    const check = await runCli(['check-config', '--config', bad]);
    expect(check.code).toBe(78);
    expect(check.stderr).toContain('postgres.schema');

    const s = await setup('newer');
    await stopCollector(await s.run());
    await s.q('INSERT INTO edge_sensor_collector_schema (version) VALUES (99)');
    const newer = await runCli(['collect', ...s.files.args]);
    expect(newer.code).toBe(65);
    expect(newer.stdout).toMatch(/newer than this edge-sensor understands/);
    expect((await runCli(['fleet', ...s.files.args])).code).toBe(65);
  });
});

export type { Spawned };
