import { EventEmitter } from 'node:events';
import type { Config } from './config/schema.js';
import type { LinkSecrets } from './config/secrets.js';
import type { Logger } from './util/logger.js';
import { createSensor } from './sensors/index.js';
import { Sampler } from './sampler/sampler.js';
import { checkInBackground, openStore } from './store/open.js';
import { StorageKeeper } from './store/keeper.js';
import type { Store } from './store/store.js';
import { Confirmations } from './store/confirmations.js';
import { MqttLink } from './mqtt/link.js';
import { SyncLoop } from './sync/sync-loop.js';
import { AckBook } from './sync/ack-book.js';
import { DropAnnouncer } from './sync/drop-announcer.js';
import { EndToEnd } from './sync/end-to-end.js';
import { LinkJournal } from './sync/link-journal.js';
import { OnlineMode } from './sync/online-mode.js';
import { DeviceStatus, willStatus, type LinkView, type StatusPayload } from './status/device-status.js';
import { StatusReporter } from './status/reporter.js';
import { SavedState } from './status/saved-state.js';
import { AlreadyRunningError, ControlServer } from './control/server.js';
import { controlHandlers, type DaemonCommands } from './control/handlers.js';
import { socketPathOf } from './control/protocol.js';
import { deviceTopics } from './topics.js';
import { buildRemote } from './remote.js';
import { CLOCK_FLOOR_MS } from './version.js';

export interface DaemonOptions {
  now?: () => number;
  /** move the database aside and start a fresh one first (it was found damaged) */
  replaceDatabase?: string;
  /** secrets and TLS material resolved by the caller (never part of the config object) */
  link?: LinkSecrets;
}

/** What others may see of a running daemon and ask of it (systemd's status line, the demo). */
export interface DaemonView {
  linkView(): LinkView;
  statusPayload(): StatusPayload;
  readonly commands: DaemonCommands;
}

/** Every module of one run, built in the order their constructors need (started in flow order by Daemon.start). */
function build(config: Config, store: Store, log: Logger, now: () => number, startedAt: number, opts: DaemonOptions) {
  const { device, mqtt: m, sync: s } = config;
  const topics = deviceTopics(m.topicPrefix, device.id);
  const will = { topic: topics.status, payload: () => JSON.stringify(willStatus(device.id, now())), retain: true };
  const link = new MqttLink(
    { url: m.url, protocolVersion: m.protocolVersion, clientId: m.clientId ?? `edge-sensor-${device.id}`, keepaliveSec: m.keepaliveSec, connectTimeoutMs: m.connectTimeoutMs, sessionExpirySec: m.sessionExpirySec, will, topicAlias: m.topicAlias, retry: s.retry, ...opts.link },
    log.child({ module: 'mqtt' }),
    now,
  );
  // acknowledged rows ride on the keeper's next append (no fsync of their own; with a commit window, the next commit)
  const acks = new AckBook(store, { writeDelayMs: Math.max(s.ackWriteDelayMs, 2 * config.database.commitWindowMs), maxWaitingRows: s.batchSize * s.maxInFlight }, log.child({ module: 'sync' }), now);
  const sync = new SyncLoop(store, link, { ...s, deviceId: device.id, topic: topics.readings, protocolVersion: m.protocolVersion }, log.child({ module: 'sync' }), now, acks);
  const keeper = new StorageKeeper(store, sync, { ...config.retention, commitWindowMs: config.database.commitWindowMs, confirmedThrough: s.endToEnd ? () => endToEnd!.storedThrough : undefined }, log.child({ module: 'retention' }), now, acks);
  const sensorLog = log.child({ module: 'sensors' });
  const sensors = config.sensors.map((c) => ({ sensor: createSensor(c, config.host, { warn: (o, msg) => sensorLog.warn(o, msg) }), schedule: c.schedule, readAtStart: c.readAtStart }));
  const sampler = new Sampler(sensors, keeper, log.child({ module: 'sampler' }), { readTimeoutMs: 10_000, clockFloorMs: CLOCK_FLOOR_MS, now: opts.now });
  const announcer = new DropAnnouncer(store, link, { topic: topics.dropped, deviceId: device.id, timeoutMs: s.publishTimeoutMs }, log.child({ module: 'sync' }));
  const endToEnd = s.endToEnd ? new EndToEnd({ store: new Confirmations(store), link, sync, announcer }, { topic: topics.stored, resendPerMinute: s.resendPerMinute }, log.child({ module: 'end-to-end' }), now) : undefined; // off: nothing subscribed
  // the reporter publishes what `status` gathers; `status` shows the mode, which says goodbye through the reporter
  const reporter = new StatusReporter(link, { topic: topics.status, intervalMs: config.status.intervalMs, timeoutMs: s.publishTimeoutMs }, (): StatusPayload => status.payload(), log.child({ module: 'status' }));
  const mode = new OnlineMode({ store, link, sync, status: reporter }, { drainTimeoutMs: s.shutdownTimeoutMs, stayReachable: config.control.mqtt.enabled }, log);
  const status = new DeviceStatus({ store, link, mode, keeper, sync, sampler, endToEnd }, device.id, startedAt, now);
  const saved = new SavedState(store, status, log);
  const commands = controlHandlers({ status, mode, store, sync, link, readings: keeper, now }, log);
  const remote = buildRemote(config, { link, store, mode, commands, topics }, log, now);
  return { store, keeper, sampler, link, sync, announcer, endToEnd, reporter, mode, status, saved, commands, remote };
}

type Parts = ReturnType<typeof build>;

/**
 * Builds every module from its config section and starts them in flow order: the store and its
 * keeper, the control socket (also the lock against a second daemon on the same database), the
 * sampler, the MQTT link, the sync loop, status and drop announcements. Stops sampling first, so
 * that the drain has an end, then the rest in reverse. Emits `damaged` when the database is found
 * damaged while running, by each part that finds it (the supervisor starts a fresh daemon on a fresh database).
 */
export class Daemon extends EventEmitter<{ damaged: [reason: string] }> implements DaemonView {
  private parts?: Parts;
  private control?: ControlServer;
  private stopping?: Promise<void>;
  private readonly now = () => (this.opts.now ?? Date.now)();

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
    private readonly opts: DaemonOptions = {},
  ) {
    super();
  }

  /** Throws StoreOpenError when the database is unusable, AlreadyRunningError beside another daemon. */
  async start(): Promise<void> {
    const startedAt = this.now();
    const store = openStore(this.config.database, this.log, this.now, this.opts.replaceDatabase);
    const p = build(this.config, store, this.log, this.now, startedAt, this.opts);
    this.parts = p;
    p.keeper.on('written', (_n, ticks) => {
      p.sync.nudge();
      p.remote.written(ticks);
    });
    p.keeper.on('dropped', (when) => (when === 'now' ? void p.announcer.announce() : p.announcer.announceSoon(5000)));
    p.keeper.on('damaged', (reason) => this.emit('damaged', reason));
    new LinkJournal(store, p.sync, this.config.mqtt.url, this.log).follow(p.link);
    p.saved.follow(p.link);
    p.mode.on('changed', (online) => {
      p.saved.save();
      // the connection may have stayed up for remote commands: nothing else would say we are back
      if (online) void p.reporter.publishNow().then(() => p.remote.backOnline());
    });
    await this.startControl(p.commands);
    // from here on all is synchronous: no command is answered before every module runs
    p.keeper.start();
    p.sampler.start();
    p.mode.start(); // the link, unless offline by choice
    p.sync.start();
    p.reporter.start();
    p.remote.start();
    p.announcer.start();
    p.endToEnd?.start();
    p.saved.save();
    void checkInBackground(store).then((damage) => damage && !this.stopping && this.emit('damaged', damage));
  }

  private async startControl(commands: DaemonCommands): Promise<void> {
    const path = socketPathOf(this.config);
    const control = new ControlServer(path, commands, this.log.child({ module: 'control' }));
    try {
      await control.start();
      this.control = control;
    } catch (err) {
      if (err instanceof AlreadyRunningError) throw err;
      // the daemon's first job is sampling: run without the control socket rather than not at all
      this.log.error({ err, path }, 'control socket unavailable; CLI commands that need the daemon will not work');
    }
  }

  linkView(): LinkView {
    return this.started().status.linkView();
  }

  statusPayload(): StatusPayload {
    return this.started().status.payload();
  }

  get commands(): DaemonCommands {
    return this.started().commands;
  }

  private started(): Parts {
    if (!this.parts) throw new Error('daemon not started');
    return this.parts;
  }

  /** Stops sampling, lets in-flight batches finish (bounded), says goodbye to the broker, closes the database. Idempotent. */
  stop(reason = 'stop requested'): Promise<void> {
    this.stopping ??= this.shutDown(reason);
    return this.stopping;
  }

  private async shutDown(reason: string): Promise<void> {
    const p = this.parts;
    this.log.info({ reason }, 'stopping');
    if (p) {
      p.status.markStopping();
      await this.control?.stop();
      await p.sampler.stop();
      p.keeper.stop();
      p.announcer.stop();
      p.endToEnd?.stop();
      p.remote.stop();
      const drained = await p.sync.drain(this.config.sync.shutdownTimeoutMs);
      if (!drained.settled) this.log.warn({ inFlightBatches: drained.inFlight }, 'stopping with batches unacknowledged; their rows stay pending');
      p.sync.stop();
      if (p.link.connected) await p.reporter.goodbye({ state: 'offline', reason: 'shutdown' });
      p.reporter.stop();
      await p.link.stop();
      // let the rejections of batches cut off by the disconnect record their attempt
      await new Promise((r) => setImmediate(r));
      closeStore(p, reason, drained.inFlight);
    }
    this.log.info({ written: p?.sampler.stats.written ?? 0, lost: p?.sampler.stats.lost ?? 0, ackedRows: p?.sync.stats.ackedRows ?? 0 }, 'stopped');
  }
}

function closeStore({ store, keeper, saved }: Parts, reason: string, unacknowledgedBatches: number): void {
  if (!store.isOpen) return;
  keeper.persistLost();
  saved.save();
  try {
    store.logEvent('stopped', { reason, pending: store.countPending(), unacknowledgedBatches });
  } catch {
    /* a full disk: the log line says the same */
  }
  store.close();
}
