import { EventEmitter } from 'node:events';
import type { Config } from './config/schema.js';
import type { Logger } from './util/logger.js';
import { createSensor } from './sensors/index.js';
import { Sampler } from './sampler/sampler.js';
import { Store } from './store/store.js';
import { Retention } from './store/retention.js';
import { DiskGuard } from './store/disk-guard.js';
import { StoreOpenError } from './store/database.js';
import { moveAside, quickCheck, quickCheckInBackground, readSalvage, SYNC_CHECK_MAX_BYTES } from './store/integrity.js';
import { DropAnnouncer } from './sync/drop-announcer.js';
import { SyncLoop, type SyncReport } from './sync/sync-loop.js';
import { MqttLink, type LinkOptions } from './mqtt/link.js';
import { StatusReporter, type StatusPayload } from './status/reporter.js';
import { ControlServer } from './control/server.js';
import { defaultSocketPath } from './control/protocol.js';
import { CLOCK_FLOOR_MS, VERSION } from './version.js';
import { RateLimiter } from './util/rate-limit.js';

export interface DaemonOptions {
  now?: () => number;
  /** move the database aside and start a fresh one first (it was found damaged) */
  replaceDatabase?: string;
  /** secrets and TLS material resolved by the caller (never part of the config object) */
  link?: Partial<Pick<LinkOptions, 'username' | 'password' | 'tls'>>;
}

/** Where the daemon stands with the broker, as `status` shows it. */
export type LinkView = 'online' | 'offline-by-choice' | 'unreachable' | 'connecting' | 'stopped';

export interface DaemonState {
  pid: number;
  startedAt: string;
  link: LinkView;
  lastError?: string;
  updatedAt: string;
}

const MODE_KEY = 'mode';
const STATE_KEY = 'daemon_state';

/**
 * Builds every module from its config section and starts them in flow order
 * (store → sampler → mqtt link → sync → status); stops them in reverse. Constructors only assign.
 */
export class Daemon extends EventEmitter<{ damaged: [string] }> {
  store?: Store;
  sampler?: Sampler;
  link?: MqttLink;
  sync?: SyncLoop;
  status?: StatusReporter;
  retention?: Retention;
  guard?: DiskGuard;
  announcer?: DropAnnouncer;
  control?: ControlServer;
  private retentionTimer?: NodeJS.Timeout;
  private guardTimer?: NodeJS.Timeout;
  private guardSoon?: NodeJS.Timeout;
  private modeChange: Promise<void> = Promise.resolve();
  /** readings lost while the loss could not be written down (disk full): persisted when possible */
  private unsavedLost = 0;
  private damagedReported = false;
  private stopping?: Promise<void>;
  private startedAt = 0;
  private offlineByChoice = false;
  private syncing?: Promise<SyncReport>;
  /** skipping the backoff: 3 at once, then one every 10 s */
  private readonly forcedSyncs = new RateLimiter(3, 10_000);

  constructor(
    readonly config: Config,
    private readonly log: Logger,
    private readonly opts: DaemonOptions = {},
  ) {
    super();
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  get topics() {
    return { readings: `${this.topicBase}/readings`, status: `${this.topicBase}/status` };
  }

  /** Opens the database and starts sampling and syncing. Throws StoreOpenError when the database is unusable. */
  async start(): Promise<void> {
    const { config, log } = this;
    this.startedAt = this.now();
    const store = this.openStore();
    this.store = store;
    const st = store.stats();
    log.info({ module: 'store', path: config.database.path, pending: st.pending, parked: st.parked, lastSeq: st.lastSeq }, 'database open');
    this.offlineByChoice = store.getConfig(MODE_KEY) === 'offline';
    await this.startControl();

    // sampling first: readings are safe in SQLite whatever the network does
    const sensorLog = log.child({ module: 'sensors' });
    const sensors = config.sensors.map((s) => ({
      sensor: createSensor(s, config.host, { warn: (o, m) => sensorLog.warn(o, m) }),
      schedule: s.schedule,
      readAtStart: s.readAtStart,
    }));
    this.sampler = new Sampler(sensors, store, log.child({ module: 'sampler' }), {
      readTimeoutMs: 10_000,
      clockFloorMs: CLOCK_FLOOR_MS,
      now: this.opts.now,
    });
    this.sampler.onLost = (n, err) => this.onLost(n, err);
    this.sampler.start();

    this.retention = new Retention(store, { syncedMaxAgeMs: config.retention.syncedMaxAge, syncLogMaxRows: config.retention.syncLogMaxRows }, log.child({ module: 'retention' }));
    this.retentionTimer = setInterval(() => this.runRetention(), config.retention.pruneIntervalMs);
    this.retentionTimer.unref();

    const m = config.mqtt;
    const link = new MqttLink(
      {
        url: m.url,
        protocolVersion: m.protocolVersion,
        clientId: m.clientId ?? `edge-sensor-${config.device.id}`,
        keepaliveSec: m.keepaliveSec,
        connectTimeoutMs: m.connectTimeoutMs,
        sessionExpirySec: m.sessionExpirySec,
        // the broker sends the will when the connection dies, at a moment the device cannot
        // know: no `ts`, but when that connection began
        will: { topic: this.topics.status, payload: () => JSON.stringify(this.willStatus()), retain: true },
        topicAlias: m.topicAlias,
        retry: config.sync.retry,
        ...this.opts.link,
      },
      log.child({ module: 'mqtt' }),
      () => this.now(),
    );
    this.link = link;
    this.sync = new SyncLoop(
      store,
      link,
      {
        deviceId: config.device.id,
        topic: this.topics.readings,
        batchSize: config.sync.batchSize,
        maxInFlight: config.sync.maxInFlight,
        intervalMs: config.sync.intervalMs,
        publishTimeoutMs: config.sync.publishTimeoutMs,
        compression: config.sync.compression,
        protocolVersion: m.protocolVersion,
        retry: config.sync.retry,
      },
      log.child({ module: 'sync' }),
      () => this.now(),
    );
    this.announcer = new DropAnnouncer(store, link, { topic: `${this.topicBase}/dropped`, deviceId: config.device.id, timeoutMs: config.sync.publishTimeoutMs }, log.child({ module: 'sync' }));
    this.guard = new DiskGuard(
      store,
      { maxDatabaseBytes: config.retention.maxDatabaseBytes, minFreeDiskBytes: config.retention.minFreeDiskBytes, onFull: config.retention.onFull },
      log.child({ module: 'retention' }),
    );
    const guard = this.guard;
    this.sampler.accepting = () => guard.acceptingReadings;
    // the timer below is for what changes on its own (free space, age); the cap grows with writes
    this.sampler.onWritten = () => {
      if (guard.overLimit()) this.runGuard();
      this.sync?.nudge();
    };
    this.guardTimer = setInterval(() => this.runGuard(), config.retention.checkIntervalMs);
    this.guardTimer.unref();
    this.runGuard();
    this.status = new StatusReporter(
      link,
      { topic: this.topics.status, intervalMs: config.status.intervalMs, timeoutMs: config.sync.publishTimeoutMs },
      () => this.statusPayload(),
      log.child({ module: 'status' }),
    );

    link.on('connect', () => {
      store.logEvent('connected', { url: m.url.replace(/\/\/[^/@]*@/, '//***@'), window: this.sync?.window() });
      this.saveState();
    });
    link.on('disconnect', ({ reason }) => {
      if (reason !== 'paused' && reason !== 'stopped') store.logEvent('disconnected', { reason, inFlightBatches: this.sync?.stats.inFlightBatches ?? 0 });
      this.saveState();
    });
    let savedReason: string | undefined;
    link.on('connectFailed', ({ reason, first }) => {
      if (first) store.logEvent('connect_failed', { reason });
      // the status shows why we cannot connect: a cause that changes (broker up again, but now
      // refusing our certificate) is saved, a repeated one is not written again
      if (first || reason !== savedReason) {
        savedReason = reason;
        this.saveState();
      }
    });

    this.sync.start();
    this.status.start();
    this.announcer.start();
    if (this.offlineByChoice) {
      log.warn('offline by choice (edge-sensor online to resume): sampling, not syncing');
      this.sync.setPaused(true);
    } else {
      link.start();
    }
    this.saveState();
    this.checkInBackground();
  }

  get topicBase(): string {
    return `${this.config.mqtt.topicPrefix}/${this.config.device.id}`;
  }

  /** Opens the database; a damaged one is moved aside (kept) and a fresh one started. */
  private openStore(): Store {
    const { config, log } = this;
    const open = () => new Store(config.database.path, { synchronous: config.database.synchronous, busyTimeoutMs: config.database.busyTimeoutMs, create: true });
    if (this.opts.replaceDatabase) return this.replaceDamaged(this.opts.replaceDatabase, open);
    let store: Store;
    try {
      store = open();
    } catch (err) {
      if (err instanceof StoreOpenError && err.kind === 'corrupt') return this.replaceDamaged(err.message, open);
      throw err;
    }
    let verdict = 'ok';
    try {
      // touches the pending index and the tables' roots; small files get a full quick_check too
      store.stats();
      if (store.fileBytes() <= SYNC_CHECK_MAX_BYTES) verdict = quickCheck(store.db);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== 'SQLITE_CORRUPT' && code !== 'SQLITE_NOTADB') {
        store.close();
        throw err;
      }
      verdict = (err as Error).message;
    }
    {
      if (verdict !== 'ok') {
        store.close();
        return this.replaceDamaged(`integrity check: ${verdict}`, open);
      }
    }
    log.debug({ bytes: store.fileBytes() }, 'database opened');
    return store;
  }

  private replaceDamaged(reason: string, open: () => Store): Store {
    const path = this.config.database.path;
    const old = readSalvage(path);
    const movedTo = moveAside(path, this.now());
    this.log.fatal(
      { path, movedTo, reason, lastSeq: old.lastSeq, pendingLeftBehind: old.pending ?? 'unknown' },
      'DATABASE DAMAGED: moved it aside (kept, not deleted) and started a fresh one; unsynced readings in it are not sent (counted as lost)',
    );
    const store = open();
    // the fresh database carries on what the old one knew: seq above its highest, its loss counts,
    // and the readings it still held unsent, counted as lost (they can be salvaged from the file)
    store.db
      .transaction(() => {
        if (old.lastSeq !== undefined) store.setSeqFloor(old.lastSeq);
        const lost = old.lostTotal + (old.pending ?? 0);
        if (lost > 0) store.addConfigInt('lost_total', lost);
        if (old.droppedTotal > 0) store.addConfigInt('dropped_total', old.droppedTotal);
        store.logEvent('database_replaced', { movedTo, reason, lastSeq: old.lastSeq ?? null, pendingLeftBehind: old.pending ?? null });
      })
      .immediate();
    return store;
  }

  /** Large databases are checked after start, in a worker thread, so start-up stays fast. */
  private checkInBackground(): void {
    const store = this.store;
    if (!store || store.fileBytes() <= SYNC_CHECK_MAX_BYTES) return;
    void quickCheckInBackground(store.path).then((verdict) => {
      if (verdict === 'ok' || verdict.startsWith('skipped') || this.stopping) return;
      this.reportDamaged(`integrity check: ${verdict}`);
    });
  }

  private reportDamaged(reason: string): void {
    if (this.damagedReported) return;
    this.damagedReported = true;
    this.log.fatal({ reason }, 'database damaged while running; replacing it');
    this.emit('damaged', reason);
  }

  private onLost(count: number, err: Error & { code?: string }): void {
    if (err.code === 'STORAGE_FULL' && this.store?.db.open) {
      // refused by the stop-sampling policy (the database is at its cap, the disk is not full):
      // these readings get seqs and are announced upstream as a dropped range
      try {
        this.store.recordRefused(count, 'storage full (stop-sampling)', this.now());
        this.announcer?.announceSoon(5000);
        return;
      } catch {
        /* not even that could be written: counted as lost below */
      }
    }
    this.unsavedLost += count;
    if (err.code === 'SQLITE_CORRUPT' || err.code === 'SQLITE_NOTADB') this.reportDamaged(err.message);
    this.persistLost();
  }

  /** Writes the count of lost readings down; while the disk is full it waits for the next try. */
  private persistLost(): void {
    if (this.unsavedLost === 0 || !this.store?.db.open) return;
    const store = this.store;
    const n = this.unsavedLost;
    try {
      // one transaction: a count written without its event (or the reverse) would be counted again
      store.db
        .transaction(() => {
          store.addConfigInt('lost_total', n);
          store.logEvent('readings_lost', { count: n, error: this.sampler?.stats.lastWriteError ?? null });
        })
        .immediate();
      this.unsavedLost -= n;
    } catch {
      /* still full: try again at the next guard check */
    }
  }

  private runGuard(): void {
    if (!this.guard?.enabled && this.unsavedLost === 0) return;
    try {
      this.persistLost();
      const r = this.guard?.check(this.sync?.inFlightRange(), this.now());
      if (r && r.dropped > 0) void this.announcer?.announce();
      // a check does a bounded slice of work; the rest follows after the event loop had its turn
      if (r?.more && !this.guardSoon) {
        this.guardSoon = setTimeout(() => {
          this.guardSoon = undefined;
          this.runGuard();
        }, 10);
      }
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB') this.reportDamaged((err as Error).message);
      else this.log.warn({ err }, 'storage check failed');
    }
  }

  /** Lost readings: stored-count plus those not written down yet. */
  lostTotal(): number {
    const s = this.store;
    const stored = s?.db.open ? Number(s.getConfig('lost_total') ?? 0) + Number(s.getConfig('dropped_total') ?? 0) : 0;
    return stored + this.unsavedLost;
  }

  get socketPath(): string {
    return this.config.control.socketPath ?? defaultSocketPath(this.config.database.path);
  }

  /** The CLI's way in. Refuses to start beside another daemon on the same database. */
  private async startControl(): Promise<void> {
    const control = new ControlServer(
      this.socketPath,
      {
        ping: () => ({ pid: process.pid, version: VERSION, link: this.linkView(), uptimeS: Math.round((this.now() - this.startedAt) / 1000) }),
        online: async () => {
          await this.setOnline(true);
          return { link: this.linkView() };
        },
        offline: async () => {
          await this.setOnline(false);
          return { link: this.linkView() };
        },
        sync: (a) => this.syncNow(a.timeoutMs ?? 10_000),
        requeue: (a) => ({ requeued: this.requeue(a.ids) }),
        status: () => this.liveStatus(),
      },
      this.log.child({ module: 'control' }),
    );
    try {
      await control.start();
      this.control = control;
    } catch (err) {
      if ((err as Error).name === 'AlreadyRunningError') throw err;
      // the daemon's first job is sampling: run without the control socket rather than not at all
      this.log.error({ err, path: this.socketPath }, 'control socket unavailable; CLI commands that need the daemon will not work');
    }
  }

  /** What only the running daemon knows (the CLI's status adds it to what the database says). */
  liveStatus() {
    return {
      pid: process.pid,
      version: VERSION,
      link: this.linkView(),
      lastError: this.link?.lastError ?? null,
      uptimeS: Math.round((this.now() - this.startedAt) / 1000),
      inFlightBatches: this.sync?.stats.inFlightBatches ?? 0,
      window: this.sync?.stats.window ?? 0,
      unsavedLost: this.unsavedLost,
      acceptingReadings: this.guard?.acceptingReadings ?? true,
      sync: this.sync?.stats,
      sampler: this.sampler?.stats,
    };
  }

  private runRetention(): void {
    try {
      this.retention?.run(this.now());
    } catch (err) {
      this.log.warn({ err }, 'retention pass failed');
    }
  }

  linkView(): LinkView {
    if (this.stopping) return 'stopped';
    if (this.offlineByChoice) return 'offline-by-choice';
    const s = this.link?.state;
    if (s === 'connected') return 'online';
    if (this.link?.lastError) return 'unreachable';
    return 'connecting';
  }

  private saveState(): void {
    if (!this.store?.db.open) return;
    const state: DaemonState = {
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      link: this.linkView(),
      lastError: this.link?.lastError,
      updatedAt: new Date(this.now()).toISOString(),
    };
    try {
      this.store.setConfig(STATE_KEY, JSON.stringify(state));
    } catch (err) {
      this.log.debug({ err }, 'cannot save daemon state');
    }
  }

  private willStatus(): Omit<StatusPayload, 'ts'> & { connectedAt: string } {
    const { ts, ...rest } = this.offlineStatus('connection lost');
    return { ...rest, connectedAt: ts };
  }

  private offlineStatus(reason: string): StatusPayload {
    return { device: this.config.device.id, state: 'offline', reason, version: VERSION, ts: new Date(this.now()).toISOString() };
  }

  statusPayload(): StatusPayload {
    const st = this.store!.stats();
    const now = this.now();
    return {
      device: this.config.device.id,
      state: this.link?.connected ? 'online' : 'offline',
      mode: this.offlineByChoice ? 'offline-by-choice' : 'online',
      pending: st.pending,
      oldestPendingAgeMs: st.oldestPendingTs ? Math.max(0, now - Date.parse(st.oldestPendingTs)) : null,
      parked: st.parked,
      syncedTotal: st.syncedTotal,
      lostTotal: this.lostTotal(),
      lastAckAt: this.sync?.stats.lastAckAt ? new Date(this.sync.stats.lastAckAt).toISOString() : null,
      dbBytes: st.fileBytes,
      uptimeS: Math.round((now - this.startedAt) / 1000),
      version: VERSION,
      ts: new Date(now).toISOString(),
    };
  }

  /**
   * Offline by choice: stop syncing and disconnect; sampling goes on. Survives a restart.
   * Changes run one after the other: an `online` that arrived while an `offline` was still
   * draining would otherwise be undone by that offline's late disconnect.
   */
  setOnline(online: boolean): Promise<void> {
    const next = this.modeChange.then(() => this.applyMode(online));
    this.modeChange = next.catch(() => {});
    return next;
  }

  private async applyMode(online: boolean): Promise<void> {
    if (!this.store || !this.link || !this.sync) throw new Error('daemon not started');
    this.store.setConfig(MODE_KEY, online ? 'online' : 'offline');
    if (online === !this.offlineByChoice) return;
    this.offlineByChoice = !online;
    this.store.logEvent(online ? 'went_online' : 'went_offline', { by: 'operator' });
    if (online) {
      this.log.info('going online (operator)');
      this.status?.resume();
      this.sync.setPaused(false);
      const link = this.link;
      const connected = new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 3000);
        link.once('connect', () => {
          clearTimeout(t);
          resolve();
        });
      });
      link.resume();
      link.connectNow();
      // answer the operator once connected (or after 3 s: the link keeps trying with backoff)
      await connected;
    } else {
      this.log.info('going offline (operator): finishing in-flight batches, then disconnecting');
      this.sync.setPaused(true);
      await this.sync.drain(this.config.sync.shutdownTimeoutMs);
      await this.status?.goodbye({ state: 'offline', reason: 'offline by choice', mode: 'offline-by-choice' });
      await this.link.pause();
    }
    this.saveState();
  }

  /**
   * Force a sync attempt now, skipping any backoff wait. Requests that come while one runs share
   * its report; skipping the backoff is rate-limited (a flood of requests would otherwise be a
   * flood of broker connections): past the limit a request waits for the round as it comes.
   */
  syncNow(timeoutMs: number): Promise<SyncReport> {
    this.syncing ??= this.runSync(timeoutMs).finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async runSync(timeoutMs: number): Promise<SyncReport> {
    if (!this.sync || !this.link) throw new Error('daemon not started');
    if (this.offlineByChoice) {
      return { ok: false, ackedRows: 0, ackedBatches: 0, pendingLeft: this.store?.countPending(), reason: 'offline by choice (run edge-sensor online first)' };
    }
    const forced = this.forcedSyncs.take();
    if (forced) this.link.connectNow();
    const report = await this.sync.syncNow(timeoutMs, forced);
    if (!forced) report.rateLimited = true;
    if (!report.ok && !this.link.connected && this.link.lastError) report.reason = `cannot reach broker: ${this.link.lastError}`;
    report.pendingLeft = this.store?.countPending();
    return report;
  }

  /** Parked rows back to pending (all, or by id). */
  requeue(ids?: string[]): number {
    if (!this.store || !this.sync) throw new Error('daemon not started');
    const n = this.store.requeue(ids);
    if (n > 0) {
      this.store.logEvent('rows_requeued', { rows: n, ids: ids?.slice(0, 20) });
      this.log.info({ rows: n }, 'parked rows requeued');
      this.sync.rewind();
    }
    return n;
  }

  /** Stops sampling, lets in-flight batches finish (bounded), says goodbye to the broker, closes the database. Idempotent. */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info({ reason }, 'stopping');
      await this.control?.stop();
      await this.sampler?.stop();
      clearInterval(this.retentionTimer);
      clearInterval(this.guardTimer);
      clearTimeout(this.guardSoon);
      this.announcer?.stop();
      let unsettled = 0;
      if (this.sync) {
        const r = await this.sync.drain(this.config.sync.shutdownTimeoutMs);
        unsettled = r.inFlight;
        if (!r.settled) this.log.warn({ inFlightBatches: r.inFlight }, 'stopping with batches unacknowledged; their rows stay pending');
        this.sync.stop();
      }
      if (this.link?.connected) await this.status?.goodbye({ state: 'offline', reason: 'shutdown' });
      this.status?.stop();
      await this.link?.stop();
      // let the rejections of batches cut off by the disconnect record their attempt
      await new Promise((r) => setImmediate(r));
      if (this.store?.db.open) {
        this.persistLost();
        this.saveState();
        try {
          this.store.logEvent('stopped', { reason, pending: this.store.countPending(), unacknowledgedBatches: unsettled });
        } catch {
          /* a full disk: the log line below says the same */
        }
        this.store.close();
      }
      this.log.info(
        { written: this.sampler?.stats.written ?? 0, lost: this.sampler?.stats.lost ?? 0, ackedRows: this.sync?.stats.ackedRows ?? 0 },
        'stopped',
      );
    })();
    return this.stopping;
  }
}
