import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import { parseConfig } from '../src/config/load.js';
import { Daemon } from '../src/daemon.js';
import { Store } from '../src/store/store.js';
import { silentLogger } from '../src/util/logger.js';
import { makeTmp } from './helpers/tmp.js';
import { Mosquitto, mosquittoForTests } from './helpers/mosquitto.js';
import { FaultProxy } from './helpers/proxy.js';
import { fill } from './helpers/stack.js';
import { sqlValue, syncLogEvents } from './helpers/daemon-config.js';
import { TIME_SCALE, waitFor } from './helpers/process.js';
import { Watcher } from './helpers/watcher.js';
import { renderTemplate } from './helpers/ha-template.js';
import { addIioDevices, addThermalZone, addThermometer, put, w1Slave, GET_THROTTLED } from './helpers/fake-sysfs.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
// subscriptions logged: "nothing subscribed" is read from the broker's own log
const subLog = join(tmp.dir, 'mosq-subscriptions.log');
const mosq = mosquittoForTests(join(tmp.dir, 'mosq'), ['log_type subscribe', `log_dest file ${subLog}`]);
const subscriptions = (clientId: string) => (existsSync(subLog) ? readFileSync(subLog, 'utf8') : '').split('\n').filter((l) => l.includes(` ${clientId} `));

function daemonFor(name: string, url: string, extra: Record<string, unknown> = {}) {
  const db = join(tmp.dir, `${name}.db`);
  const config = parseConfig({
    device: { id: name },
    database: { path: db },
    mqtt: { url, topicPrefix: 'ha' },
    sync: { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 3000, shutdownTimeoutMs: 1000, retry: { initialDelayMs: 100, maxDelayMs: 500 } },
    status: { intervalMs: 1000 },
    sensors: [{ type: 'simulated', name: 'sim-temp', unit: '°C', schedule: '* * * * * *' }],
    log: { level: 'silent' },
    ...extra,
  });
  return { db, config, daemon: new Daemon(config, silentLogger()) };
}


// The units Home Assistant accepts per sensor device class (home-assistant.io/integrations/sensor#device-class), for the classes we emit.
const UNITS: Record<string, Array<string | undefined>> = {
  temperature: ['°C', '°F', 'K'],
  humidity: ['%'],
  pressure: ['Pa', 'hPa', 'kPa', 'bar', 'cbar', 'mbar', 'mmHg', 'inHg', 'psi'],
  illuminance: ['lx'],
  data_size: ['bit', 'kbit', 'Mbit', 'Gbit', 'B', 'kB', 'MB', 'GB', 'TB', 'KiB', 'MiB', 'GiB'],
  duration: ['d', 'h', 'min', 's', 'ms'],
  timestamp: [undefined],
};

/** The documented required and constrained fields of one discovery message. */
function checkDiscovery(topic: string, c: Record<string, unknown>, ctx: { status: string; device: string }) {
  const m = /^homeassistant\/(sensor|button|switch)\/[a-zA-Z0-9_-]+\/[a-zA-Z0-9_-]+\/config$/.exec(topic);
  expect(m, topic).not.toBeNull();
  const component = m![1];
  expect(typeof c.unique_id, topic).toBe('string');
  expect(typeof c.name, topic).toBe('string');
  const dev = c.device as Record<string, unknown>;
  expect(dev, topic).toMatchObject({ identifiers: [`edge-sensor_${ctx.device}`], name: ctx.device, model: 'edge-sensor', manufacturer: 'edge-sensor', sw_version: expect.any(String) });
  expect(c.availability, topic).toEqual([expect.objectContaining({ topic: ctx.status, value_template: expect.any(String), payload_available: 'online', payload_not_available: 'offline' })]);
  if (component === 'sensor') {
    expect(typeof c.state_topic, topic).toBe('string');
    if (c.device_class !== undefined) expect(UNITS[c.device_class as string], `${topic}: ${String(c.device_class)} in ${String(c.unit_of_measurement)}`).toContain(c.unit_of_measurement);
    if (c.state_class !== undefined) expect(['measurement', 'total', 'total_increasing']).toContain(c.state_class);
  } else {
    expect(typeof c.command_topic, topic).toBe('string');
  }
  if (c.entity_category !== undefined) expect(['diagnostic', 'config']).toContain(c.entity_category);
  return component;
}

/** The retained discovery configs a fresh subscriber gets, by topic. */
async function retainedConfigs(url: string, filter = 'homeassistant/#'): Promise<Map<string, string>> {
  const w = await Watcher.start(url);
  // the broker sends retained messages before the SUBACK's callback runs out; one more round trip to be sure
  await w.client.subscribeAsync(filter, { qos: 1 });
  await w.client.publishAsync('ha-test/marker', 'x', { qos: 1 });
  await w.stop();
  return new Map(w.seen.filter((s) => s.retain).map((s) => [s.topic, s.text]));
}

describe('config', () => {
  it('state follows homeassistant.enabled unless set; Home Assistant without it is refused', () => {
    expect(parseConfig({}).state.enabled).toBeUndefined();
    expect(() => parseConfig({ homeassistant: { enabled: true }, state: { enabled: false } })).toThrow(/homeassistant.enabled reads every value from it/);
    expect(parseConfig({ homeassistant: { enabled: true }, control: { mqtt: { enabled: true } } })).toMatchObject({ homeassistant: { discoveryPrefix: 'homeassistant' }, control: { mqtt: { burst: 10, perMinute: 30 } } });
  });
});

describe('live state', () => {
  it('arrives within a second of a sample while a 100,000-reading backlog drains through a slow link and a full window', async () => {
    // Receive Maximum 4: the batch window is 3 and stays full while the backlog drains
    const broker = await Mosquitto.start(join(tmp.dir, 'mosq-live'), ['max_inflight_messages 4']);
    const proxy = await new FaultProxy(broker.port).listen();
    proxy.delayMs = 150;
    const { db, daemon } = daemonFor('live', proxy.url, { state: { enabled: true }, sync: { batchSize: 500, maxInFlight: 8, intervalMs: 100, publishTimeoutMs: 10_000 } });
    const store = new Store(db);
    fill(store, 100_000);
    store.close();
    const w = await Watcher.start(broker.url, ['ha/live/state']);
    try {
      await daemon.start();
      await waitFor(() => w.on('ha/live/state').length >= 5, 15_000, 'five state messages');
      const live = daemon.commands.status();
      expect(live.window).toBe(3);
      const pending = sqlValue(db, 'SELECT count(*) FROM transactions WHERE synced = 0');
      expect(pending).toBeGreaterThan(50_000);
      const states = w.on('ha/live/state');
      for (const s of states.slice(1)) {
        const v = JSON.parse(s.text) as Record<string, { value: number; unit: string; ts: string }>;
        expect(v['sim-temp']).toMatchObject({ value: expect.any(Number), unit: '°C' });
        // sampled, committed, coalesced and carried over a link 150 ms each way, behind a full window
        expect(s.at - Date.parse(v['sim-temp'].ts)).toBeLessThan(1000 * TIME_SCALE);
      }
      // coalesced: one a second at most (a sample per second here)
      for (let i = 2; i < states.length; i++) expect(states[i].at - states[i - 1].at).toBeGreaterThan(500);
      // it marks nothing synced: only rows the batch path had acknowledged are (written down with a later commit)
      expect(sqlValue(db, 'SELECT count(*) FROM transactions WHERE synced = 1')).toBeLessThanOrEqual(daemon.commands.status().sync!.ackedRows);
      const late = await retainedConfigs(broker.url, 'ha/live/state');
      expect(JSON.parse(late.get('ha/live/state')!)).toHaveProperty('sim-temp.value');
    } finally {
      await daemon.stop();
      await w.stop();
      await proxy.close();
      await broker.stop();
    }
  });
});

describe('Home Assistant discovery', () => {
  it('announces every sensor type with the documented fields; each template applied to the real state or status gives the value', async () => {
    const sys = join(tmp.dir, 'sys-all');
    addThermalZone(sys, 0, 'cpu-thermal', 48_312);
    addThermometer(sys, '28-0316a2797aff', w1Slave(21_625));
    addThermometer(sys, '28-0316a2797b00', w1Slave(-3_500));
    addIioDevices(sys);
    put(join(sys, GET_THROTTLED), '50005\n');
    const { daemon } = daemonFor('all', mosq.url, {
      host: { sysRoot: sys },
      homeassistant: { enabled: true },
      control: { mqtt: { enabled: true } },
      sensors: [
        { type: 'simulated', name: 'sim-temp', unit: '°C', schedule: '* * * * * *' },
        { type: 'cpu-temperature', name: 'cpu-temp', schedule: '* * * * * *' },
        { type: 'cpu-load', name: 'cpu-load', schedule: '* * * * * *' },
        { type: 'memory', name: 'mem', schedule: '* * * * * *' },
        { type: 'memory', name: 'mem-free', measure: 'available-bytes', schedule: '* * * * * *' },
        { type: 'disk', name: 'disk', schedule: '* * * * * *' },
        { type: 'ds18b20', name: 'w1', schedule: '* * * * * *' },
        { type: 'iio', name: 'env', device: 'bme280', schedule: '* * * * * *' },
        { type: 'pi-throttled', name: 'thr', report: 'both', schedule: '* * * * * *' },
      ],
    });
    const readings = ['sim-temp', 'cpu-temp', 'cpu-load', 'mem', 'mem-free', 'disk', 'w1.28-0316a2797aff', 'w1.28-0316a2797b00', 'env.temperature', 'env.humidity', 'env.pressure', 'thr', 'thr.under-voltage', 'thr.soft-temp-limit-occurred'];
    const w = await Watcher.start(mosq.url, ['homeassistant/#', 'ha/all/state', 'ha/all/status']);
    try {
      await daemon.start();
      const stateOf = () => JSON.parse(w.last('ha/all/state')?.text ?? '{}') as Record<string, { value: number | null }>;
      const configs = () => new Map(w.seen.filter((s) => s.topic.startsWith('homeassistant/') && s.text).map((s) => [s.topic, JSON.parse(s.text) as Record<string, unknown>]));
      const forReading = (name: string) => [...configs()].find(([, c]) => c.unique_id === `edge-sensor_all_${name}`);
      // thermometers and IIO channels found by looking are announced once first seen
      await waitFor(() => readings.every((r) => typeof stateOf()[r]?.value === 'number' && forReading(r)), 15_000, 'a value and a discovery config for every reading');
      const state = w.last('ha/all/state')!.text;
      const status = w.last('ha/all/status')!.text;
      const ctx = { status: 'ha/all/status', device: 'all' };
      const all = configs();
      expect(new Set([...all.values()].map((c) => c.unique_id)).size).toBe(all.size);
      for (const r of readings) {
        const [topic, c] = forReading(r)!;
        expect(checkDiscovery(topic, c, ctx)).toBe('sensor');
        expect(c.state_topic).toBe('ha/all/state');
        expect(renderTemplate(c.value_template as string, state), r).toBe(JSON.parse(state)[r].value);
        expect(renderTemplate((c.availability as Array<{ value_template: string }>)[0].value_template, status)).toBe('online');
      }
      expect(forReading('sim-temp')![1]).toMatchObject({ device_class: 'temperature', unit_of_measurement: '°C', state_class: 'measurement' });
      expect(forReading('env.humidity')![1]).toMatchObject({ device_class: 'humidity', unit_of_measurement: '%' });
      expect(forReading('env.pressure')![1]).toMatchObject({ device_class: 'pressure', unit_of_measurement: 'hPa' });
      expect(forReading('mem-free')![1]).toMatchObject({ device_class: 'data_size', unit_of_measurement: 'B' });
      expect(forReading('thr')![1]).toMatchObject({ entity_category: 'diagnostic' });
      expect(forReading('thr')![1]).not.toHaveProperty('state_class');
      // the device's own figures from its status
      const statusJson = JSON.parse(status) as Record<string, unknown>;
      const diag = { pending: statusJson.pending, oldest_pending_age: statusJson.oldestPendingAgeMs === null ? null : Math.round((statusJson.oldestPendingAgeMs as number) / 1000), lost_total: statusJson.lostTotal, last_ack: statusJson.lastAckAt };
      for (const [key, want] of Object.entries(diag)) {
        const [topic, c] = forReading(key)!;
        checkDiscovery(topic, c, ctx);
        expect(c).toMatchObject({ state_topic: 'ha/all/status', entity_category: 'diagnostic' });
        expect(renderTemplate(c.value_template as string, status), key).toEqual(want);
        // the last will carries no figures: a value the template can show (None), not an error
        expect(renderTemplate(c.value_template as string, JSON.stringify({ device: 'all', state: 'offline', reason: 'connection lost' }))).toBeNull();
      }
      // a sync button and an online switch on the command topics
      const [bt, button] = forReading('sync')!;
      expect(checkDiscovery(bt, button, ctx)).toBe('button');
      expect(button).toMatchObject({ command_topic: 'ha/all/cmd/sync', payload_press: 'PRESS' });
      const [st, sw] = forReading('online')!;
      expect(checkDiscovery(st, sw, ctx)).toBe('switch');
      expect(sw).toMatchObject({ command_topic: 'ha/all/cmd/mode', state_topic: 'ha/all/status', payload_on: 'online', payload_off: 'offline' });
      expect(renderTemplate(sw.value_template as string, status)).toBe(sw.state_on);
      const byChoice = JSON.stringify({ ...statusJson, state: 'offline', mode: 'offline-by-choice' });
      expect(renderTemplate(sw.value_template as string, byChoice)).toBe(sw.state_off);
      // offline by choice keeps the switch usable (the connection stays up for commands)
      expect(renderTemplate((sw.availability as Array<{ value_template: string }>)[0].value_template, byChoice)).toBe('online');
      expect(all.get(st)).toBeDefined();
      // every one of them retained
      const retained = await retainedConfigs(mosq.url);
      for (const topic of all.keys()) expect(retained.has(topic), topic).toBe(true);
    } finally {
      await daemon.stop();
      await w.stop();
    }
  });

  it("announces again after Home Assistant's birth message, and clears the entity of a sensor removed from the config", async () => {
    const sensors = [
      { type: 'simulated', name: 'keep', schedule: '* * * * * *' },
      { type: 'simulated', name: 'gone', schedule: '* * * * * *' },
    ];
    const first = daemonFor('rm', mosq.url, { homeassistant: { enabled: true }, sensors });
    const w = await Watcher.start(mosq.url, ['homeassistant/+/rm/#']);
    const keepTopic = 'homeassistant/sensor/rm/keep/config';
    const goneTopic = 'homeassistant/sensor/rm/gone/config';
    try {
      await first.daemon.start();
      // two sensors and four diagnostics
      await waitFor(() => w.seen.length === 6, 10_000, 'the first announcement');
      expect(w.on(goneTopic)).toHaveLength(1);
      const perConfig = w.seen.length;
      // Home Assistant restarted: its birth message (not retained) asks every device to announce again
      await w.publish('homeassistant/status', 'online');
      await waitFor(() => w.on(keepTopic).length === 2, 10_000, 'the announcement after the birth message');
      await waitFor(() => w.seen.length === 2 * perConfig, 5000, 'every config announced again');
      expect(new Set(w.seen.slice(perConfig).map((s) => s.topic))).toEqual(new Set(w.seen.slice(0, perConfig).map((s) => s.topic)));
      await first.daemon.stop();

      const second = daemonFor('rm', mosq.url, { homeassistant: { enabled: true }, sensors: [sensors[0]] });
      await second.daemon.start();
      try {
        await waitFor(() => w.on(goneTopic).some((s) => s.text === ''), 10_000, 'the removed sensor cleared');
        const retained = await retainedConfigs(mosq.url, 'homeassistant/+/rm/#');
        expect(retained.has(goneTopic)).toBe(false);
        expect(JSON.parse(retained.get(keepTopic)!)).toMatchObject({ unique_id: 'edge-sensor_rm_keep' });
        // what was announced is remembered (for the next removal), without the cleared topic
        expect(JSON.parse(sqlValue(second.db, "SELECT value FROM config WHERE key = 'ha_discovery_topics'") as unknown as string)).not.toContain(goneTopic);
      } finally {
        await second.daemon.stop();
      }
    } finally {
      await w.stop();
    }
  });

  it('with the options off: nothing subscribed, no discovery, no commands answered', async () => {
    // the defaults: no state message, no discovery, no commands
    const { db, daemon } = daemonFor('off', mosq.url);
    const w = await Watcher.start(mosq.url, ['ha/off/#', 'homeassistant/+/off/#', 'reply/off']);
    try {
      await daemon.start();
      await w.publish('ha/off/cmd/status', '{}', { properties: { responseTopic: 'reply/off', correlationData: Buffer.from('x') } });
      // the status and two acknowledged batches mark a window in which an answer would have come
      await waitFor(() => daemon.commands.status().sync!.ackedBatches >= 2 && w.on('ha/off/status').length > 0, 10_000, 'readings synced');
      expect(new Set(w.seen.map((s) => s.topic.split('/').slice(0, 3).join('/')))).toEqual(new Set(['ha/off/readings', 'ha/off/status', 'ha/off/cmd']));
      expect(w.on('reply/off')).toHaveLength(0);
      expect(subscriptions('edge-sensor-off')).toEqual([]);
      expect(syncLogEvents(db, 'remote_command')).toHaveLength(0);
    } finally {
      await daemon.stop();
      await w.stop();
    }
  });
});
