import { afterAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { DropAnnouncer } from '../src/sync/drop-announcer.js';
import type { BatchPublisher } from '../src/sync/sync-loop.js';
import type { LinkLimits } from '../src/mqtt/link.js';
import { PublishUnknownError } from '../src/mqtt/errors.js';
import { Store } from '../src/store/store.js';
import { silentLogger } from '../src/util/logger.js';
import { mosquittoForTests } from './helpers/mosquitto.js';
import { Ledger } from './helpers/subscriber.js';
import { fill, makeStack } from './helpers/stack.js';
import { makeTmp } from './helpers/tmp.js';
import { waitFor } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
let n = 0;
const newStore = () => new Store(join(tmp.dir, `d${++n}.db`));

interface Announcement {
  device: string;
  ranges: Array<[number, number]>;
  count: number;
  reasons: string[];
  ts: string;
}

/** A publisher whose PUBACKs the test gives (or refuses) one by one. */
class FakePublisher extends EventEmitter implements BatchPublisher {
  connected = true;
  readonly limits: LinkLimits | undefined = undefined;
  readonly sent: Array<{ topic: string; payload: Announcement; settle: (err?: Error) => void }> = [];

  publish(topic: string, payload: string | Buffer, _opts: object, _timeoutMs: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.sent.push({ topic, payload: JSON.parse(payload.toString()) as Announcement, settle: (err) => (err ? reject(err) : resolve()) });
    });
  }

  connect(): void {
    this.connected = true;
    this.emit('connect', { receiveMaximum: 65535, maximumPacketSize: undefined, topicAliasMaximum: 0, sessionPresent: false });
  }
}

const opts = { topic: 'p/dev/dropped', deviceId: 'dev', timeoutMs: 5000 };

/** Drop records in a store: `ranges` separate ranges (every other row synced, so the unsynced ones are not adjacent). */
function withDrops(store: Store, ranges: number): void {
  fill(store, 2 * ranges + 1, 2 * ranges + 1);
  store.markSynced(Array.from({ length: ranges }, (_, i) => 2 * i + 2));
  const r = store.dropOldestUnsynced(ranges, 'database cap');
  expect(r.ranges).toHaveLength(ranges);
}

describe('drop announcer (a fake publisher)', () => {
  it('announces every unannounced drop and marks it only when the PUBACK comes', async () => {
    const store = newStore();
    withDrops(store, 3);
    store.recordRefused(5, 'storage full (stop-sampling)');
    const pub = new FakePublisher();
    const a = new DropAnnouncer(store, pub, opts, silentLogger());
    const done = a.announce();
    await waitFor(() => pub.sent.length === 1, 2000, 'the announcement');
    const m = pub.sent[0];
    expect(m.topic).toBe('p/dev/dropped');
    expect(m.payload).toMatchObject({ device: 'dev', ranges: [[1, 1], [3, 3], [5, 5], [8, 12]], count: 8, reasons: ['database cap', 'storage full (stop-sampling)'] });
    expect(Date.parse(m.payload.ts)).toBeGreaterThan(0);
    // sent, not acknowledged: still unannounced
    expect(store.unannouncedDrops()).toHaveLength(4);
    m.settle();
    expect(await done).toBe(4);
    expect(store.unannouncedDrops()).toEqual([]);
    store.close();
  });

  it('keeps the records when the outcome is unknown, and sends them again on the next connect', async () => {
    const store = newStore();
    withDrops(store, 2);
    const pub = new FakePublisher();
    const a = new DropAnnouncer(store, pub, opts, silentLogger());
    a.start();
    const first = a.announce();
    await waitFor(() => pub.sent.length === 1, 2000, 'the first try');
    pub.sent[0].settle(new PublishUnknownError('connection lost: test', 'connection-lost'));
    expect(await first).toBe(0);
    expect(store.unannouncedDrops()).toHaveLength(2);
    // while disconnected nothing is tried
    pub.connected = false;
    expect(await a.announce()).toBe(0);
    expect(pub.sent).toHaveLength(1);
    pub.connect();
    await waitFor(() => pub.sent.length === 2, 2000, 'the retry on connect');
    expect(pub.sent[1].payload.ranges).toEqual([[1, 1], [3, 3]]);
    pub.sent[1].settle();
    await waitFor(() => store.unannouncedDrops().length === 0, 2000, 'marked announced');
    store.close();
  });

  it('sends 1,000 ranges per message, one message after the other, and one announce at a time', async () => {
    const store = newStore();
    withDrops(store, 2500);
    const pub = new FakePublisher();
    const a = new DropAnnouncer(store, pub, opts, silentLogger());
    const all = a.announce();
    // a second call while the first runs does not send the same records again
    expect(await a.announce()).toBe(0);
    for (let i = 0; i < 3; i++) {
      await waitFor(() => pub.sent.length === i + 1, 2000, `message ${i + 1}`);
      // nothing marked before its PUBACK
      expect(store.unannouncedDrops(5000)).toHaveLength(2500 - 1000 * i);
      pub.sent[i].settle();
    }
    expect(await all).toBe(2500);
    expect(pub.sent.map((m) => m.payload.ranges.length)).toEqual([1000, 1000, 500]);
    expect(pub.sent.map((m) => m.payload.count)).toEqual([1000, 1000, 500]);
    expect(pub.sent.flatMap((m) => m.payload.ranges).map(([from]) => from)).toEqual(Array.from({ length: 2500 }, (_, i) => 2 * i + 1));
    expect(store.unannouncedDrops()).toEqual([]);
    store.close();
  });

  it('announceSoon gathers what comes within its delay into one announcement', async () => {
    const store = newStore();
    fill(store, 1, 1);
    const pub = new FakePublisher();
    const a = new DropAnnouncer(store, pub, opts, silentLogger());
    store.recordRefused(3, 'storage full (stop-sampling)');
    a.announceSoon(100);
    store.recordRefused(4, 'storage full (stop-sampling)');
    a.announceSoon(100);
    await waitFor(() => pub.sent.length === 1, 2000, 'one announcement');
    // the two refusals were one growing range
    expect(pub.sent[0].payload).toMatchObject({ ranges: [[2, 8]], count: 7 });
    pub.sent[0].settle();
    await waitFor(() => store.unannouncedDrops().length === 0, 2000, 'marked');
    a.stop();
    store.close();
  });
});

describe('drop announcer against Mosquitto', () => {
  const mosq = mosquittoForTests(join(tmp.dir, 'mosq'));

  it('reaches a subscriber at QoS 1, and the records are marked after the PUBACK', async () => {
    const ledger = await Ledger.start(mosq.url, 'none/+/readings');
    const got: Announcement[] = [];
    ledger.client.on('message', (topic, buf) => {
      if (topic === 'p/real/dropped') got.push(JSON.parse(buf.toString()) as Announcement);
    });
    await ledger.client.subscribeAsync('p/real/dropped', { qos: 1 });
    const s = makeStack({ dir: tmp.dir, url: mosq.url, name: 'real' });
    withDrops(s.store, 3);
    const a = new DropAnnouncer(s.store, s.link, { ...opts, topic: 'p/real/dropped', deviceId: 'real' }, silentLogger());
    a.start(); // announces on connect
    s.link.start();
    await waitFor(() => s.store.unannouncedDrops().length === 0, 10_000, 'announced and acknowledged');
    await waitFor(() => got.length === 1, 5000, 'at the subscriber');
    expect(got[0]).toMatchObject({ device: 'real', ranges: [[1, 1], [3, 3], [5, 5]], count: 3, reasons: ['database cap'] });
    await s.stop();
    await ledger.stop();
  });
});
