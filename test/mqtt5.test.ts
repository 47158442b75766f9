import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { Mosquitto } from './helpers/mosquitto.js';
import { FaultProxy } from './helpers/proxy.js';
import { fill, makeStack } from './helpers/stack.js';
import { Ledger } from './helpers/subscriber.js';
import { makeTmp } from './helpers/tmp.js';
import { waitFor } from './helpers/process.js';

// MQTT 5 features against a real Mosquitto, observed on the wire: a proxy between the daemon's
// stack and the broker parses every packet the client sends.

const tmp = makeTmp('es-m5-');
// brokers and proxies are stopped here, so that a failed assertion leaves no broker running
const cleanups: Array<() => Promise<unknown>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  tmp.cleanup();
});

async function broker(name: string, extra: string[] = []) {
  const mosq = await Mosquitto.start(join(tmp.dir, name), extra);
  cleanups.push(() => mosq.stop());
  const proxy = await new FaultProxy(mosq.port).listen();
  cleanups.push(() => proxy.close());
  return { mosq, proxy };
}

interface SeenPublish {
  connection: number;
  topic: string;
  alias?: number;
  /** the whole packet, fixed header included */
  bytes: number;
  properties: NonNullable<IPublishPacket['properties']>;
}

/** Parses what clients send through the proxy; one parser per connection. */
function capture(proxy: FaultProxy): SeenPublish[] {
  const seen: SeenPublish[] = [];
  const parsers = new Map<number, ReturnType<typeof mqttPacket.parser>>();
  proxy.tap = (n, from, data) => {
    if (from !== 'client') return;
    let p = parsers.get(n);
    if (!p) {
      p = mqttPacket.parser({ protocolVersion: 5 });
      p.on('packet', (packet: Packet) => {
        if (packet.cmd !== 'publish') return;
        const len = packet.length ?? 0;
        const header = 1 + (len < 128 ? 1 : len < 16_384 ? 2 : len < 2_097_152 ? 3 : 4);
        const properties = { ...(packet.properties ?? {}) };
        seen.push({ connection: n, topic: packet.topic, alias: properties.topicAlias, bytes: header + len, properties });
      });
      parsers.set(n, p);
    }
    p.parse(data);
  };
  return seen;
}

describe('MQTT 5 against Mosquitto', () => {
  it('topic alias: the readings topic is sent once per connection, then only its alias; fresh clients start over', async () => {
    const { mosq, proxy } = await broker('alias');
    const seen = capture(proxy);
    const s = makeStack({ dir: tmp.dir, url: proxy.url, name: 'alias', link: { topicAlias: true } });
    const ledger = await Ledger.start(mosq.url, s.topic);
    cleanups.push(() => ledger.stop());
    fill(s.store, 1000);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 15_000, 'first 1000 synced');
    expect(s.link.limits?.topicAliasMaximum).toBeGreaterThan(0);
    proxy.cut();
    await waitFor(() => s.link.connected && proxy.connections === 2, 10_000, 'reconnected');
    fill(s.store, 1000);
    await waitFor(() => s.store.countPending() === 0, 15_000, 'second 1000 synced');
    await waitFor(() => ledger.unique === 2000, 5000, 'every reading at the subscriber');
    await s.stop();

    for (const connection of [1, 2]) {
      const pubs = seen.filter((p) => p.connection === connection && (p.topic === s.topic || p.topic === ''));
      expect(pubs.length).toBeGreaterThan(1);
      // the first publish on a connection names the topic and sets the alias; the others carry only the alias
      expect(pubs[0]).toMatchObject({ topic: s.topic, alias: expect.any(Number) });
      for (const p of pubs.slice(1)) expect(p).toMatchObject({ topic: '', alias: pubs[0].alias });
    }
    // readings must wait in a broker's queue as long as it takes: no message expiry
    expect(seen.filter((p) => p.properties.messageExpiryInterval !== undefined)).toEqual([]);
  });

  it("the broker's Maximum Packet Size (max_packet_size) is respected when batches are split", async () => {
    const max = 4096;
    const { mosq, proxy } = await broker('maxpkt', [`max_packet_size ${max}`]);
    const seen = capture(proxy);
    const s = makeStack({ dir: tmp.dir, url: proxy.url, name: 'maxpkt', sync: { batchSize: 500 } });
    const ledger = await Ledger.start(mosq.url, s.topic);
    cleanups.push(() => ledger.stop());
    fill(s.store, 2000);
    s.start();
    await waitFor(() => s.store.countPending() === 0, 20_000, 'all synced');
    await waitFor(() => ledger.unique === 2000, 5000, 'every reading at the subscriber');
    expect(s.link.limits?.maximumPacketSize).toBe(max);
    expect(s.sync.stats).toMatchObject({ rejectedBatches: 0, unknownBatches: 0 });
    expect(proxy.connections).toBe(1); // Mosquitto drops a client that sends a larger packet
    const readings = seen.filter((p) => p.connection === 1 && p.topic !== 't/maxpkt/status');
    expect(readings.length).toBeGreaterThan(2000 / 500);
    expect(Math.max(...readings.map((p) => p.bytes))).toBeLessThanOrEqual(max);
    await s.stop();
  });

  it('session expiry: a reconnecting device resumes its session', async () => {
    const { proxy } = await broker('session');
    const s = makeStack({ dir: tmp.dir, url: proxy.url, name: 'session', link: { sessionExpirySec: 600 } });
    s.start();
    await waitFor(() => s.link.connected, 10_000, 'connected');
    expect(s.link.limits?.sessionPresent).toBe(false);
    proxy.cut();
    await waitFor(() => s.link.connected && proxy.connections === 2, 10_000, 'reconnected');
    expect(s.link.limits?.sessionPresent).toBe(true);
    await s.stop();
  });
});
