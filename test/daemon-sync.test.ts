import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { EmbeddedBroker } from '../src/demo/embedded-broker.js';
import { Mosquitto, mosquittoForTests } from './helpers/mosquitto.js';
import { Ledger } from './helpers/subscriber.js';
import { makeTmp } from './helpers/tmp.js';
import { daemonConfig, sqlValue } from './helpers/daemon-config.js';
import { TIME_SCALE, spawnCli, waitFor } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
const mosq = mosquittoForTests(join(tmp.dir, 'mosq'));

function config(name: string, url: string, extra: Record<string, unknown> = {}) {
  return daemonConfig(tmp.dir, name, {
    mqtt: { url, topicPrefix: 'ds' },
    sync: { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 3000, shutdownTimeoutMs: 1500, retry: { initialDelayMs: 100, maxDelayMs: 500, maxAttempts: 5 } },
    status: { intervalMs: 1000 },
    sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 200 }],
    ...extra,
  });
}

const q = sqlValue;

describe('daemon with a broker', () => {
  it('publishes a retained status, and the broker publishes the retained last will on SIGKILL', async () => {
    const c = config('will', mosq.url);
    // the broker has the status once it forwarded it to a subscriber that was there first
    const first = await Ledger.start(mosq.url, 'ds/will/readings', { statusFilter: 'ds/will/status' });
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => first.statuses.some((s) => s.state === 'online'), 10_000, 'the online status');
    await first.stop();
    // a subscriber that arrives later still gets the status: it is retained
    const late = await Ledger.start(mosq.url, 'ds/will/readings', { statusFilter: 'ds/will/status' });
    await waitFor(() => late.statuses.length > 0, 5000, 'retained status');
    const st = late.statuses[0];
    expect(st).toMatchObject({ device: 'will', state: 'online', mode: 'online', version: expect.any(String), _retain: true });
    for (const k of ['pending', 'parked', 'syncedTotal', 'dbBytes', 'uptimeS']) expect(typeof st[k]).toBe('number');
    expect('oldestPendingAgeMs' in st && 'lastAckAt' in st).toBe(true);
    d.child.kill('SIGKILL');
    await d.exited;
    await waitFor(() => late.statuses.some((s) => s.state === 'offline'), 10_000, 'last will');
    const will = late.statuses.find((s) => s.state === 'offline')!;
    expect(will).toMatchObject({ device: 'will', reason: 'connection lost', connectedAt: expect.any(String) });
    // no `ts`: nobody knows at connect time when the connection will die; connectedAt is the
    // start of the connection that did, not the start of the daemon
    expect('ts' in will).toBe(false);
    expect(Date.parse(String(will.connectedAt))).toBeGreaterThanOrEqual(Date.parse(String(st.ts)) - 5000);
    await late.stop();
    // the will is retained too
    const later = await Ledger.start(mosq.url, 'ds/will/readings', { statusFilter: 'ds/will/status' });
    await waitFor(() => later.statuses.length > 0, 5000, 'retained will');
    expect(later.statuses[0]).toMatchObject({ state: 'offline', _retain: true });
    await later.stop();
  });

  it('SIGTERM while batches are in flight: exit 0, acked rows synced, the rest pending; offline status published', async () => {
    const broker = await new EmbeddedBroker().listen();
    let acks = 0;
    // acknowledge the first three reading batches, then hold every PUBACK
    broker.onPublish = (_c, p) => (p.topic.endsWith('/readings') ? (++acks <= 3 ? 'ack' : 'hold') : 'ack');
    broker.keepLog = true;
    const c = config('term', broker.url, {
      sync: { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 30_000, shutdownTimeoutMs: 1500 },
    });
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => broker.held.length >= 4, 15_000, 'window full of held batches');
    const t0 = Date.now();
    d.child.kill('SIGTERM');
    const { code } = await d.exited;
    expect(code).toBe(0);
    // the drain ended at its deadline with the batches still held, not at their PUBACK or their
    // publish timeout (30 s: what waiting for them would have taken), by the daemon's own clock
    const at = (msg: string) => d.logLines().find((l) => l.msg === msg);
    expect(at('stopping with batches unacknowledged; their rows stay pending')).toMatchObject({ inFlightBatches: 4 });
    const stopMs = (at('stopped')!.time as number) - (at('stopping')!.time as number);
    expect(stopMs).toBeGreaterThanOrEqual(1500 - 50);
    expect(stopMs).toBeLessThan(30_000);
    // and the process is gone within the shutdown budget plus a generous margin for a loaded machine
    expect(Date.now() - t0).toBeLessThan(1500 + 10_000 * TIME_SCALE);
    expect(q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1')).toBe(300);
    const pending = q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 0');
    expect(pending).toBeGreaterThanOrEqual(400);
    // the batches cut off by the stop were counted as an attempt
    expect(q(c.db, 'SELECT count(*) FROM transactions WHERE retry_count = 1')).toBeGreaterThanOrEqual(400);
    const statuses = broker.log.filter((m) => m.topic === 'ds/term/status').map((m) => JSON.parse(m.payload.toString()));
    expect(statuses.at(-1)).toMatchObject({ state: 'offline', reason: 'shutdown' });
    // and the sync log says how it ended
    const stopped = JSON.parse(String(q(c.db, "SELECT details FROM sync_log WHERE event_type = 'stopped' ORDER BY id DESC LIMIT 1") as unknown));
    expect(stopped).toMatchObject({ reason: 'SIGTERM', pending, unacknowledgedBatches: 4 });
    await broker.close();
  });

  it('done-when: 1,000 readings/s, broker down for 30 s and back, SIGTERM: distinct ids received = rows synced, nothing lost', async () => {
    const own = await Mosquitto.start(join(tmp.dir, 'mosq-dw'));
    const ledger = await Ledger.start(own.url, 'ds/+/readings');
    const c = config('dw', own.url, {
      sync: { batchSize: 500, maxInFlight: 8, intervalMs: 200, publishTimeoutMs: 3000, retry: { initialDelayMs: 200, maxDelayMs: 1000, maxAttempts: 10 } },
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 1000 }],
    });
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1') >= 2000, 15_000, 'readings flowing');
    await own.stop();
    // 30 s of readings (1,000 a second) buffered while the broker is away, however long a loaded machine takes for them
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 0') >= 30_000, 120_000, '30 s of readings buffered', 500);
    await own.start();
    await waitFor(() => q(c.db, 'SELECT count(*) FROM transactions WHERE synced = 0') < 1500, 30_000, 'backlog drained');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const db = new Database(c.db, { readonly: true });
    const synced = db.prepare('SELECT id FROM transactions WHERE synced = 1').pluck().all() as string[];
    const pendingIds = new Set(db.prepare('SELECT id FROM transactions WHERE synced = 0').pluck().all() as string[]);
    db.close();
    await waitFor(() => synced.every((id) => ledger.has(id)), 10_000, 'every synced id at the subscriber');
    expect(synced.length).toBeGreaterThan(30_000);
    // every distinct id the subscriber got is a synced row, except rows whose PUBACK the stop cut
    // off (received, still pending: sent again at the next start); nothing arrived that was never committed
    const syncedSet = new Set(synced);
    const receivedNotSynced = [...ledger.counts.keys()].filter((id) => !syncedSet.has(id));
    expect(receivedNotSynced.every((id) => pendingIds.has(id))).toBe(true);
    expect(ledger.unique - receivedNotSynced.length).toBe(synced.length);
    expect(receivedNotSynced.length).toBeLessThanOrEqual(8 * 500); // at most the window cut off by the stop
    // the outage is in the sync log, once, not once per attempt
    const events = new Database(c.db, { readonly: true }).prepare("SELECT event_type FROM sync_log WHERE event_type IN ('disconnected','connect_failed','connected')").pluck().all();
    expect(events.filter((e) => e === 'disconnected')).toHaveLength(1);
    expect(events.filter((e) => e === 'connect_failed').length).toBeLessThanOrEqual(1);
    // and in the log at a falling rate: about 30 connect attempts, a handful of warnings
    const attempts = d.logLines().filter((l) => l.msg === 'connected to broker').at(-1)?.attempts as number | undefined;
    expect(attempts ?? 0).toBeGreaterThanOrEqual(15);
    const warnLines = d.logLines().filter((l) => (l.level as number) >= 40);
    expect(warnLines.length).toBeLessThanOrEqual(5);
    await ledger.stop();
    await own.stop();
  });
});
