import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { parseConfig } from '../src/config/load.js';
import { Daemon } from '../src/daemon.js';
import { silentLogger } from '../src/util/logger.js';
import { makeTmp } from './helpers/tmp.js';
import { mosquittoForTests } from './helpers/mosquitto.js';
import { waitFor } from './helpers/process.js';
import { sqlValue, syncLogEvents } from './helpers/daemon-config.js';
import { Watcher } from './helpers/watcher.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
const mosq = mosquittoForTests(join(tmp.dir, 'mosq'));


function start(name: string, control: Record<string, unknown> = {}, protocolVersion: 4 | 5 = 5) {
  const db = join(tmp.dir, `${name}.db`);
  const config = parseConfig({
    device: { id: name },
    database: { path: db },
    mqtt: { url: mosq.url, topicPrefix: 'rc', protocolVersion },
    sync: { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 3000, shutdownTimeoutMs: 1000 },
    status: { intervalMs: 60_000 },
    state: { enabled: true },
    control: { mqtt: { enabled: true, ...control } },
    sensors: [{ type: 'simulated', name: 'sim', schedule: '* * * * * *' }],
    log: { level: 'silent' },
  });
  return { db, daemon: new Daemon(config, silentLogger()) };
}

/** An MQTT 5 requester: a request with a response topic and correlation data, and its answer. */
class Requester {
  private n = 0;
  constructor(
    readonly w: Watcher,
    private readonly device: string,
  ) {}

  async ask(verb: string, payload = '{}'): Promise<Record<string, unknown>> {
    const id = `req-${++this.n}`;
    await this.w.publish(`rc/${this.device}/cmd/${verb}`, payload, { properties: { responseTopic: `reply/${this.device}`, correlationData: Buffer.from(id) } });
    const answer = await waitFor(() => this.w.on(`reply/${this.device}`).find((s) => s.correlationData?.toString() === id), 10_000, `the answer to ${verb}`);
    return JSON.parse(answer!.text) as Record<string, unknown>;
  }
}

describe('remote commands over MQTT 5', () => {
  let d: ReturnType<typeof start>;
  let w: Watcher;
  let rq: Requester;
  beforeAll(async () => {
    d = start('cmd', { burst: 100, perMinute: 6000 });
    w = await Watcher.start(mosq.url, ['reply/cmd', 'rc/cmd/status', 'rc/cmd/state']);
    rq = new Requester(w, 'cmd');
    await d.daemon.start();
    await waitFor(() => d.daemon.linkView() === 'online', 10_000, 'connected');
  });
  afterAll(async () => {
    await d.daemon.stop();
    await w.stop();
  });

  it('answers every verb on the response topic with its correlation data, and logs each in sync_log', async () => {
    expect(await rq.ask('ping')).toMatchObject({ ok: true, verb: 'ping', result: { pid: process.pid, link: 'online' } });
    expect(await rq.ask('status')).toMatchObject({ ok: true, verb: 'status', result: { link: 'online', window: expect.any(Number), sync: expect.any(Object) } });
    const sync = await rq.ask('sync', '{"timeoutMs": 3000}');
    expect(sync).toMatchObject({ ok: true, result: { ok: true, pendingLeft: expect.any(Number) } });
    expect(await rq.ask('requeue')).toEqual({ ok: true, verb: 'requeue', result: { requeued: 0 } });
    const rec = await rq.ask('record', JSON.stringify({ amount: 42.5, sensor: 'meter', unit: 'kWh', description: 'from afar' }));
    expect(rec).toMatchObject({ ok: true, result: { recorded: { sensor: 'meter', value: 42.5, unit: 'kWh' } } });
    // the manual reading is stored (and synced by the batch path) and becomes a live value
    await waitFor(() => JSON.parse(w.last('rc/cmd/state')?.text ?? '{}').meter?.value === 42.5, 5000, 'the recorded value in the live state');
    // the CLI's rules for a manual reading
    const bad = await rq.ask('record', JSON.stringify({ amount: 'lots', sensor: 'no spaces' }));
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatch(/sensor expects 1-64 characters.*amount expects a number/);
    // offline by choice keeps the connection for commands: online comes back through it
    expect(await rq.ask('offline')).toEqual({ ok: true, verb: 'offline', result: { link: 'offline-by-choice' } });
    await waitFor(() => JSON.parse(w.last('rc/cmd/status')!.text).mode === 'offline-by-choice', 5000, 'the offline status');
    expect(JSON.parse(w.last('rc/cmd/status')!.text)).toMatchObject({ state: 'offline', reason: 'offline by choice' });
    expect(await rq.ask('sync')).toMatchObject({ ok: true, result: { ok: false, reason: expect.stringMatching(/offline by choice/) } });
    expect(await rq.ask('online')).toEqual({ ok: true, verb: 'online', result: { link: 'online' } });
    await waitFor(() => JSON.parse(w.last('rc/cmd/status')!.text).mode === 'online', 5000, 'the online status at once');
    const logged = syncLogEvents(d.db, 'remote_command');
    expect(logged.map((e) => e.verb)).toEqual(['ping', 'status', 'sync', 'requeue', 'record', 'record', 'offline', 'sync', 'online']);
    expect(logged.every((e) => e.replied === true)).toBe(true);
    expect(logged[5]).toMatchObject({ ok: false, error: expect.stringMatching(/amount/) });
  });

  it("runs Home Assistant's button and switch (plain payloads, no response topic)", async () => {
    const before = syncLogEvents(d.db, 'remote_command').length;
    await w.publish('rc/cmd/cmd/mode', 'offline');
    await waitFor(() => d.daemon.linkView() === 'offline-by-choice', 5000, 'offline by the switch');
    await w.publish('rc/cmd/cmd/mode', 'online');
    await waitFor(() => d.daemon.linkView() === 'online', 5000, 'online by the switch');
    await w.publish('rc/cmd/cmd/sync', 'PRESS');
    await waitFor(() => syncLogEvents(d.db, 'remote_command').length === before + 3, 5000, 'three commands logged');
    expect(syncLogEvents(d.db, 'remote_command').slice(before)).toEqual([
      { verb: 'mode', ran: 'offline', ok: true, replied: false },
      { verb: 'mode', ran: 'online', ok: true, replied: false },
      { verb: 'sync', ok: true, replied: false },
    ]);
  });

  it('malformed JSON, an unknown verb, bad arguments and a missing response topic: an error answer (or a log entry), never a crash', async () => {
    expect(await rq.ask('sync', '{"timeoutMs":')).toEqual({ ok: false, verb: 'sync', error: 'malformed payload: expected a JSON object of arguments, or nothing' });
    expect(await rq.ask('sync', '[1,2]')).toMatchObject({ ok: false, error: expect.stringMatching(/malformed payload/) });
    expect(await rq.ask('frobnicate')).toEqual({ ok: false, verb: 'frobnicate', error: 'unknown command "frobnicate"' });
    expect(await rq.ask('__proto__')).toMatchObject({ ok: false, error: expect.stringMatching(/unknown command/) });
    expect(await rq.ask('sync', '{"timeoutMs": 5}')).toMatchObject({ ok: false, error: expect.stringMatching(/bad arguments for sync: timeoutMs/) });
    expect(await rq.ask('mode', 'sideways')).toMatchObject({ ok: false, error: 'mode expects the payload online or offline' });
    expect(await rq.ask('status', 'x'.repeat(70_000))).toMatchObject({ ok: false, error: expect.stringMatching(/too large/) });
    // no response topic: nobody to answer; the refusal is in sync_log
    await w.publish('rc/cmd/cmd/frobnicate', '{}');
    await waitFor(() => syncLogEvents(d.db, 'remote_command').some((e) => e.verb === 'frobnicate' && e.replied === false), 5000, 'the unanswerable command logged');
    // an empty payload is how a retained message is cleared: it never runs a command
    expect(await rq.ask('offline', '')).toMatchObject({ ok: false, error: expect.stringMatching(/^empty payload/) });
    expect(d.daemon.linkView()).toBe('online');
    expect(await rq.ask('ping')).toMatchObject({ ok: true });
  });

  it('a retained command runs once when published, never again when replayed at the next connection', async () => {
    const r = start('retained', { burst: 100, perMinute: 6000 });
    const w2 = await Watcher.start(mosq.url);
    try {
      await w2.publish('rc/retained/cmd/record', JSON.stringify({ amount: 1 }), { retain: true });
      await r.daemon.start();
      await waitFor(() => syncLogEvents(r.db, 'remote_command').length === 1, 10_000, 'the replayed command seen');
      expect(syncLogEvents(r.db, 'remote_command')).toEqual([{ verb: 'record', ok: false, error: 'retained command ignored', replied: false }]);
      expect(sqlValue(r.db, "SELECT count(*) FROM transactions WHERE sensor = 'manual'")).toBe(0);
    } finally {
      await w2.client.publishAsync('rc/retained/cmd/record', Buffer.alloc(0), { retain: true, qos: 1 });
      await r.daemon.stop();
      await w2.stop();
    }
  });
});

describe('a flood of commands', () => {
  it('past the rate limit: refused with an error answer (those answers limited too), counted in sync_log, the daemon unharmed', async () => {
    const d = start('flood', { burst: 3, perMinute: 1 });
    const w = await Watcher.start(mosq.url, ['reply/flood']);
    try {
      await d.daemon.start();
      await waitFor(() => d.daemon.linkView() === 'online', 10_000, 'connected');
      for (let i = 0; i < 40; i++) void w.publish('rc/flood/cmd/ping', '{}', { properties: { responseTopic: 'reply/flood', correlationData: Buffer.from(String(i)) } });
      await waitFor(() => w.on('reply/flood').length >= 8, 10_000, 'the answers');
      const answers = w.on('reply/flood').map((s) => JSON.parse(s.text) as { ok: boolean; error?: string });
      expect(answers.filter((a) => a.ok)).toHaveLength(3);
      expect(answers.filter((a) => !a.ok).every((a) => /rate limited/.test(a.error!))).toBe(true);
      // 37 refused, at most 5 answered at once
      expect(answers.length).toBeLessThanOrEqual(3 + 5 + 2);
      expect(d.daemon.linkView()).toBe('online');
    } finally {
      await d.daemon.stop();
      await w.stop();
    }
    expect(syncLogEvents(d.db, 'remote_command')).toHaveLength(3);
    expect(syncLogEvents(d.db, 'remote_commands_refused')).toEqual([{ count: 37, reason: 'rate limited' }]);
  });
});

describe('MQTT 3.1.1', () => {
  it('runs commands but cannot answer them (no response topic in 3.1.1)', async () => {
    const d = start('v4', {}, 4);
    const w = await Watcher.start(mosq.url, []);
    try {
      await d.daemon.start();
      await waitFor(() => d.daemon.linkView() === 'online', 10_000, 'connected');
      await w.publish('rc/v4/cmd/offline', '{}');
      await waitFor(() => d.daemon.linkView() === 'offline-by-choice', 5000, 'offline by command');
      await w.publish('rc/v4/cmd/online', '{}');
      await waitFor(() => d.daemon.linkView() === 'online', 5000, 'online by command');
      expect(syncLogEvents(d.db, 'remote_command')).toEqual([
        { verb: 'offline', ok: true, replied: false },
        { verb: 'online', ok: true, replied: false },
      ]);
    } finally {
      await d.daemon.stop();
      await w.stop();
    }
  });
});
