import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
const ROOT = join(import.meta.dirname, '..', '..');
import mqtt from 'mqtt';
import { MqttLink } from '../../src/mqtt/link.js';
import { StoredPublisher, type StoredPublisherOptions } from '../../src/collector/stored-publisher.js';
import type { PgStore } from '../../src/collector/pg/store.js';
import { silentLogger } from '../../src/util/logger.js';
import { Mosquitto, mosquittoForTests } from '../helpers/mosquitto.js';
import { testSchema } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { waitFor } from '../helpers/process.js';
import { item, PREFIX, range, readingsItem, store } from './helpers.js';

// The collector's `stored` answers (issue 16) from a real PostgreSQL schema to a real broker.

const tmp = makeTmp('es-stored-');
afterAll(tmp.cleanup);
const broker = mosquittoForTests(join(tmp.dir, 'mosq'));
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Answer {
  through: number;
  missing: Array<[number, number]>;
  ts: string;
}

async function setup(o: Partial<StoredPublisherOptions> & { reorderWindowMs?: number } = {}) {
  const schema = await testSchema('st');
  const st: PgStore = store(schema.url, schema.schema, o.reorderWindowMs ?? 0);
  await st.open('migrate');
  const link = new MqttLink({ url: broker.url, protocolVersion: 5, clientId: `col-${schema.schema}`, keepaliveSec: 10, connectTimeoutMs: 3000, sessionExpirySec: 0, retry: { initialDelayMs: 50, maxDelayMs: 500 } }, silentLogger());
  link.start();
  await waitFor(() => link.connected, 10_000, 'the collector link');
  const pub = new StoredPublisher(st, link, { topicPrefix: PREFIX, intervalMs: 100_000, tailWindowMs: 1000, republishMs: 60_000, maxRanges: 100, publishTimeoutMs: 5000, ...o }, silentLogger());
  const watcher = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  const got: Array<{ device: string; answer: Answer; retain: boolean }> = [];
  watcher.on('message', (topic, p, packet) => {
    if (p.length > 0) got.push({ device: topic.split('/')[1], answer: JSON.parse(p.toString()), retain: packet.retain });
  });
  await watcher.subscribeAsync(`${PREFIX}/+/stored`, { qos: 1 });
  cleanups.push(async () => {
    pub.stop();
    await watcher.endAsync();
    for (const d of ['pi-1', 'pi-2']) await link.publish(`${PREFIX}/${d}/stored`, '', { retain: true }, 5000);
    await link.stop();
    await st.close();
    await schema.cleanup();
  });
  return { st, pub, got };
}

const status = (device: string, fields: Record<string, unknown>) => item(`${PREFIX}/${device}/status`, JSON.stringify({ device, state: 'online', ts: new Date().toISOString(), ...fields }));

describe('collector: the stored answers', () => {
  it('one retained message per device per round, coalescing every commit since the last; unchanged answers are not sent again', async () => {
    const { st, pub, got } = await setup();
    await st.write([readingsItem('pi-1', range(1, 10))]);
    pub.changed(['pi-1']);
    await st.write([readingsItem('pi-1', range(11, 20)), readingsItem('pi-2', range(1, 5))]);
    pub.changed(['pi-1', 'pi-2']);
    expect(await pub.tick()).toBe(2);
    await waitFor(() => got.length === 2, 10_000, 'two answers');
    expect(got.map((g) => [g.device, g.answer.through, g.answer.missing])).toEqual([['pi-1', 20, []], ['pi-2', 5, []]]);
    // nothing changed: nothing sent
    pub.changed(['pi-1']);
    expect(await pub.tick()).toBe(0);
    // a new connection (the broker may have lost its retained messages): told again
    pub.reconnected();
    expect(await pub.tick()).toBe(2);
  });

  it('open gaps are asked for once older than the reorder window, without waiting for another commit', async () => {
    const { st, pub, got } = await setup({ reorderWindowMs: 1500 });
    await st.write([readingsItem('pi-1', range(1, 10)), readingsItem('pi-1', range(21, 30))]);
    pub.changed(['pi-1']);
    expect(await pub.tick()).toBe(1);
    await waitFor(() => got.length === 1, 10_000, 'the first answer');
    // the gap is younger than the window: not asked for yet, but the device is looked at again when it comes of age
    expect(got[0].answer).toMatchObject({ through: 10, missing: [] });
    await waitFor(async () => (await pub.tick()) === 1, 10_000, 'an answer once the gap is old enough', 200);
    await waitFor(() => got.length === 2, 10_000, 'the second answer');
    expect(got[1].answer).toMatchObject({ through: 10, missing: [[11, 20]] });
    expect(got[1].retain).toBe(false); // delivered live; a new subscriber gets it retained
  });

  it("a tail gap: the device's status says the broker acknowledged more than is stored; asked for after tailWindowMs", async () => {
    const { st, pub, got } = await setup({ tailWindowMs: 1000 });
    await st.write([readingsItem('pi-1', range(1, 50)), status('pi-1', { syncedThrough: 80 })]);
    pub.changed(['pi-1']);
    await pub.tick();
    await waitFor(() => got.length === 1, 10_000, 'the first answer');
    expect(got[0].answer).toMatchObject({ through: 50, missing: [] });
    await waitFor(async () => (await pub.tick()) === 1, 10_000, 'the tail asked for', 200);
    await waitFor(() => got.length === 2, 10_000, 'the second answer');
    expect(got[1].answer).toMatchObject({ through: 50, missing: [[51, 80]] });
    // the resend arrives: no more tail
    await st.write([readingsItem('pi-1', range(51, 80))]);
    pub.changed(['pi-1']);
    await pub.tick();
    await waitFor(() => got.length === 3, 10_000, 'the third answer');
    expect(got[2].answer).toMatchObject({ through: 80, missing: [] });
  });

  it('at most maxRanges ranges per message, lowest first', async () => {
    const { st, pub, got } = await setup({ maxRanges: 3 });
    await st.write([readingsItem('pi-1', [2, 4, 6, 8, 10, 12])]);
    pub.changed(['pi-1']);
    await pub.tick();
    await waitFor(() => got.length === 1, 10_000, 'the answer');
    expect(got[0].answer.missing).toEqual([[1, 1], [3, 3], [5, 5]]);
  });
});

describe("the README's broker ACL", () => {
  it("only the collector's user may publish {prefix}/+/stored; a device reads its own only", async () => {
    const dir = join(tmp.dir, 'acl');
    const passwd = join(tmp.dir, 'passwd');
    writeFileSync(passwd, '');
    for (const u of ['collector', 'operator', 'pi-1', 'pi-2']) execFileSync('mosquitto_passwd', ['-b', passwd, u, `pw-${u}`]);
    const acl = join(tmp.dir, 'aclfile');
    // the README's ACL itself, with the prefix `es`: the documented file is the tested one
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const block = /In Mosquitto's ACL[\s\S]*?```\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    writeFileSync(acl, block!.split('\n').map((l) => l.trim().replaceAll('edge-sensor/', 'es/')).join('\n'));
    const mosq = await Mosquitto.start(dir, ['allow_anonymous false', `password_file ${passwd}`, `acl_file ${acl}`]);
    const as = (u: string) => mqtt.connectAsync(mosq.url, { protocolVersion: 5, username: u, password: `pw-${u}`, clientId: `acl-${u}` });
    const [col, op, pi1, pi2] = [await as('collector'), await as('operator'), await as('pi-1'), await as('pi-2')];
    try {
      const got: string[] = [];
      pi1.on('message', (t, p) => got.push(`${t} ${p}`));
      // Mosquitto 2.0 grants a subscription it will not deliver on: the read ACL is checked per message
      const granted = await pi1.subscribeAsync(['es/pi-1/stored', 'es/pi-2/stored'], { qos: 1 });
      expect(granted[0].qos).toBe(1);
      // another device's forgery is refused (MQTT 5 PUBACK 135, not authorized)
      await expect(pi2.publishAsync('es/pi-1/stored', '{"through":1e15,"missing":[[1,100]]}', { qos: 1, retain: true })).rejects.toMatchObject({ code: 135 });
      // the device itself cannot write its answers either
      await expect(pi1.publishAsync('es/pi-1/stored', '{"through":1e15}', { qos: 1 })).rejects.toMatchObject({ code: 135 });
      await col.publishAsync('es/pi-1/stored', '{"through":7,"missing":[]}', { qos: 1, retain: true });
      await col.publishAsync('es/pi-2/stored', '{"through":9,"missing":[]}', { qos: 1, retain: true });
      await waitFor(() => got.length === 1, 10_000, "the collector's answer");
      expect(got).toEqual(['es/pi-1/stored {"through":7,"missing":[]}']);
      // and the collector's user may not write readings in a device's name
      await expect(col.publishAsync('es/pi-1/readings', '{}', { qos: 1 })).rejects.toMatchObject({ code: 135 });
      // commands: only the operator's user may send them, and a device hears its own only
      const cmds: string[] = [];
      pi1.on('message', (t) => { if (t.includes('/cmd/')) cmds.push(t); });
      await pi1.subscribeAsync(['es/pi-1/cmd/+', 'es/pi-2/cmd/+'], { qos: 1 });
      await expect(pi2.publishAsync('es/pi-1/cmd/offline', '{}', { qos: 1 })).rejects.toMatchObject({ code: 135 });
      await expect(col.publishAsync('es/pi-1/cmd/offline', '{}', { qos: 1 })).rejects.toMatchObject({ code: 135 });
      await op.publishAsync('es/pi-2/cmd/sync', '{}', { qos: 1 });
      await op.publishAsync('es/pi-1/cmd/sync', '{}', { qos: 1 });
      await waitFor(() => cmds.length === 1, 10_000, "the operator's command");
      expect(cmds).toEqual(['es/pi-1/cmd/sync']);
    } finally {
      await Promise.all([col.endAsync(), op.endAsync(), pi1.endAsync(), pi2.endAsync()]);
      await mosq.stop();
    }
  });
});
