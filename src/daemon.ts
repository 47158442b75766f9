import type { Config } from './config/schema.js';
import type { Logger } from './util/logger.js';
import { createSensor } from './sensors/index.js';
import { Sampler } from './sampler/sampler.js';
import { Store } from './store/store.js';
import { CLOCK_FLOOR_MS } from './version.js';

export interface DaemonOptions {
  now?: () => number;
}

/**
 * Builds every module from its config section and starts them in flow order
 * (store → sampler → sync); stops them in reverse. Constructors only assign.
 */
export class Daemon {
  store?: Store;
  sampler?: Sampler;
  private stopping?: Promise<void>;

  constructor(
    readonly config: Config,
    private readonly log: Logger,
    private readonly opts: DaemonOptions = {},
  ) {}

  /** Opens the database and starts sampling. Throws StoreOpenError when the database is unusable. */
  async start(): Promise<void> {
    const { config, log } = this;
    const store = new Store(config.database.path, {
      synchronous: config.database.synchronous,
      busyTimeoutMs: config.database.busyTimeoutMs,
      create: true,
    });
    this.store = store;
    const st = store.stats();
    log.info({ module: 'store', path: config.database.path, pending: st.pending, parked: st.parked, lastSeq: st.lastSeq }, 'database open');

    const sensorLog = log.child({ module: 'sensors' });
    const sensors = config.sensors.map((s) => ({
      sensor: createSensor(s, config.host, { warn: (o, m) => sensorLog.warn(o, m) }),
      schedule: s.schedule,
    }));
    this.sampler = new Sampler(sensors, store, log.child({ module: 'sampler' }), {
      readTimeoutMs: 10_000,
      clockFloorMs: CLOCK_FLOOR_MS,
      now: this.opts.now,
    });
    this.sampler.start();
  }

  /** Stops sampling, finishes the writes in progress, closes the database. Idempotent. */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ reason }, 'stopping');
      await this.sampler?.stop();
      this.store?.close();
      this.log.info({ written: this.sampler?.stats.written ?? 0, lost: this.sampler?.stats.lost ?? 0 }, 'stopped');
    })();
    return this.stopping;
  }
}
