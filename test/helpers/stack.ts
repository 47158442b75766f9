import { join } from 'node:path';
import { Store } from '../../src/store/store.js';
import { MqttLink, type LinkOptions } from '../../src/mqtt/link.js';
import { SyncLoop, type SyncOptions } from '../../src/sync/sync-loop.js';
import { silentLogger } from '../../src/util/logger.js';

export interface StackOptions {
  dir: string;
  url: string;
  name?: string;
  protocolVersion?: 4 | 5;
  sync?: Partial<SyncOptions>;
  /** overrides of the link's options (session expiry, topic alias, credentials, TLS) */
  link?: Partial<LinkOptions>;
  store?: Store;
}

/** The daemon's store → sync → mqtt chain, in-process, against a real broker. */
export function makeStack(o: StackOptions) {
  const name = o.name ?? 'dev';
  const store = o.store ?? new Store(join(o.dir, `${name}-${Math.random().toString(36).slice(2, 8)}.db`));
  const protocolVersion = o.protocolVersion ?? 5;
  const retry = { initialDelayMs: 50, maxDelayMs: 200, maxAttempts: 3 };
  const link = new MqttLink(
    { url: o.url, protocolVersion, clientId: `t-${name}-${Math.random().toString(36).slice(2, 8)}`, keepaliveSec: 5, connectTimeoutMs: 2000, sessionExpirySec: 0, retry, ...o.link },
    silentLogger(),
  );
  const opts: SyncOptions = {
    deviceId: name,
    topic: `t/${name}/readings`,
    batchSize: 100,
    maxInFlight: 4,
    intervalMs: 50,
    // these tests write beside the loop (not through the keeper, whose writes nudge it): look often
    idleLookMs: 50,
    publishTimeoutMs: 2000,
    compression: 'none',
    protocolVersion,
    retry,
    ...o.sync,
  };
  const sync = new SyncLoop(store, link, opts, silentLogger());
  return {
    store,
    link,
    sync,
    topic: opts.topic,
    start() {
      sync.start();
      link.start();
    },
    async stop() {
      sync.setPaused(true);
      await sync.drain(1000);
      sync.stop();
      await link.stop();
      await new Promise((r) => setImmediate(r));
      store.close();
    },
  };
}

export const reading = (i: number, sensor = 'sim') => ({ sensor, value: i, unit: 'C' });

/** Appends n readings in ticks of `perTick`. */
export function fill(store: Store, n: number, perTick = 1000): void {
  for (let i = 0; i < n; i += perTick) {
    const k = Math.min(perTick, n - i);
    store.append(Array.from({ length: k }, (_, j) => reading(i + j)));
  }
}
