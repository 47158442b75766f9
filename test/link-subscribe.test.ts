import { afterAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { Mosquitto } from './helpers/mosquitto.js';
import { makeTmp } from './helpers/tmp.js';
import { waitFor } from './helpers/process.js';
import { MqttLink, type LinkMessage } from '../src/mqtt/link.js';
import { silentLogger } from '../src/util/logger.js';

// The device's link also listens (its collector's answers, remote commands): subscriptions that
// come back on every connection, since each is a fresh client and a broker may forget a session.

const tmp = makeTmp('es-lsub-');
afterAll(tmp.cleanup);

function link(url: string, extra: Partial<ConstructorParameters<typeof MqttLink>[0]> = {}) {
  return new MqttLink(
    { url, protocolVersion: 5, clientId: `lsub-${Math.random().toString(36).slice(2, 8)}`, keepaliveSec: 5, connectTimeoutMs: 2000, sessionExpirySec: 0, retry: { initialDelayMs: 50, maxDelayMs: 200 }, ...extra },
    silentLogger(),
  );
}

describe('link subscriptions', () => {
  it('receives on its filters, and again after the broker restarts without the session', async () => {
    // a broker that keeps nothing: after a restart the subscription exists only if the link makes it again
    const mosq = await Mosquitto.start(join(tmp.dir, 'm1'), ['persistence false']);
    const l = link(mosq.url);
    const got: LinkMessage[] = [];
    l.on('message', (m) => got.push(m));
    l.subscribe('dev/d1/stored');
    l.start();
    const pub = await mqtt.connectAsync(mosq.url, { protocolVersion: 5, reconnectPeriod: 200 });
    try {
      await waitFor(() => l.connected, 10_000, 'the link to connect');
      // until a message arrives: the SUBACK may come after the CONNACK
      await waitFor(async () => {
        await pub.publishAsync('dev/d1/stored', '{"through":1}', { qos: 1 });
        return got.length > 0;
      }, 10_000, 'the first message');
      expect(got[0]).toMatchObject({ topic: 'dev/d1/stored' });
      expect(got[0].payload.toString()).toBe('{"through":1}');
      await pub.publishAsync('dev/d2/stored', 'not mine', { qos: 1 });
      await mosq.stop();
      await mosq.start();
      await waitFor(() => l.connected, 20_000, 'the link to reconnect');
      const before = got.length;
      await waitFor(async () => {
        if (!pub.connected) return false;
        await pub.publishAsync('dev/d1/stored', '{"through":2}', { qos: 1 });
        return got.length > before;
      }, 20_000, 'a message after the restart');
      expect(got.at(-1)!.payload.toString()).toBe('{"through":2}');
      expect(got.every((m) => m.topic === 'dev/d1/stored')).toBe(true);
    } finally {
      await pub.endAsync(true);
      await l.stop();
      await mosq.stop();
    }
  });

  it('asks the broker (MQTT 5) to send it nothing larger than maxIncomingBytes', async () => {
    const mosq = await Mosquitto.start(join(tmp.dir, 'm2'));
    const l = link(mosq.url, { maxIncomingBytes: 1024 });
    const got: string[] = [];
    l.on('message', (m) => got.push(m.payload.toString()));
    l.subscribe('dev/d1/cmd/+');
    l.start();
    const pub = await mqtt.connectAsync(mosq.url, { protocolVersion: 5 });
    try {
      await waitFor(() => l.connected, 10_000, 'the link to connect');
      await waitFor(async () => {
        await pub.publishAsync('dev/d1/cmd/big', 'x'.repeat(5000), { qos: 1 });
        await pub.publishAsync('dev/d1/cmd/small', 'ok', { qos: 1 });
        return got.includes('ok');
      }, 10_000, 'the small message');
      expect(got.every((p) => p.length < 1024)).toBe(true);
      expect(l.connected).toBe(true);
    } finally {
      await pub.endAsync(true);
      await l.stop();
      await mosq.stop();
    }
  });
});
