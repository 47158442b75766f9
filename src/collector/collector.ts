import type { Logger } from '../util/logger.js';
import { Backoff } from '../util/backoff.js';
import type { CollectorConfig, CollectorSecrets } from './config.js';
import { decodeMessage, type DecodeOptions } from './decode.js';
import { StoreUnavailableError } from './pg/errors.js';
import { PgStore } from './pg/store.js';
import { FleetPageServer } from './http/server.js';
import { FleetSubscriber } from './subscriber.js';
import { StoredPublisher } from './stored-publisher.js';
import { Writer } from './writer.js';

const SUMMARY_EVERY_MS = 60_000;
const PRUNE_EVERY_MS = 3_600_000;

/**
 * Wiring only: broker side → decode → writer → PostgreSQL store, built from the config, started in
 * that order's reverse (the store must be open before the first message) and stopped broker first.
 */
export class Collector {
  readonly store: PgStore;
  readonly subscriber: FleetSubscriber;
  readonly writer: Writer;
  /** the retained `stored` answers to the devices (issue 16), unless endToEnd.enabled is false */
  readonly stored?: StoredPublisher;
  private stopping = false;
  /** ends the wait for PostgreSQL at start when a stop is asked */
  private wake?: () => void;
  private summaryTimer?: NodeJS.Timeout;
  private pruneTimer?: NodeJS.Timeout;
  /** the fleet page (http.listen), with a store of its own: a slow page query never holds a write */
  readonly page?: { server: FleetPageServer; store: PgStore };
  private since = { readings: 0, duplicates: 0, rejected: 0, messages: 0 };

  constructor(
    private readonly config: CollectorConfig,
    secrets: Pick<CollectorSecrets, 'link' | 'pgPassword' | 'httpSecret'>,
    private readonly log: Logger,
  ) {
    const m = config.mqtt;
    const pg = config.postgres;
    this.store = new PgStore(
      { url: pg.url, password: secrets.pgPassword, schema: pg.schema, connectTimeoutMs: pg.connectTimeoutMs, statementTimeoutMs: pg.statementTimeoutMs, lockTimeoutMs: pg.lockTimeoutMs, reorderWindowMs: config.gaps.reorderWindowMs, statusEveryMs: config.statusHistory.everyMs },
      log.child({ module: 'store' }),
    );
    this.subscriber = new FleetSubscriber(
      {
        link: {
          url: m.url,
          protocolVersion: m.protocolVersion,
          clientId: m.clientId,
          keepaliveSec: m.keepaliveSec,
          connectTimeoutMs: m.connectTimeoutMs,
          sessionExpirySec: m.sessionExpirySec,
          ...secrets.link,
          retry: { initialDelayMs: 1000, maxDelayMs: 30_000 },
        },
        topicPrefix: m.topicPrefix,
        shareGroup: m.shareGroup,
        receiveMaximum: m.receiveMaximum,
        maxHeldBytes: config.limits.maxHeldBytes,
      },
      log.child({ module: 'mqtt' }),
    );
    const h = config.http;
    if (h.listen !== undefined) {
      const store = new PgStore(
        { url: pg.url, password: secrets.pgPassword, schema: pg.schema, connectTimeoutMs: pg.connectTimeoutMs, statementTimeoutMs: Math.min(pg.statementTimeoutMs, h.requestTimeoutMs), lockTimeoutMs: pg.lockTimeoutMs, reorderWindowMs: config.gaps.reorderWindowMs, applicationName: 'edge-sensor-fleet-page', poolSize: 2, noJit: true },
        log.child({ module: 'page-store' }),
      );
      const server = new FleetPageServer({ listen: h.listen, auth: h.auth, secret: secrets.httpSecret, requestTimeoutMs: h.requestTimeoutMs, trouble: h.trouble }, store, log.child({ module: 'http' }));
      this.page = { server, store };
    }
    this.writer = new Writer(this.store, { maxReadings: config.batch.maxReadings, retry: { initialDelayMs: 1000, maxDelayMs: 30_000 } }, log.child({ module: 'writer' }));
    const e = config.endToEnd;
    if (e.enabled) {
      this.stored = new StoredPublisher(
        this.store,
        this.subscriber,
        { topicPrefix: m.topicPrefix, intervalMs: e.intervalMs, tailWindowMs: e.tailWindowMs, republishMs: e.republishMs, maxRanges: e.maxRanges, publishTimeoutMs: e.publishTimeoutMs },
        log.child({ module: 'stored' }),
      );
    }
  }

  /**
   * Opens the database (waiting for it while it is unreachable), then subscribes. Throws
   * SchemaError or StoreConfigError when the database can never be used as configured.
   */
  async start(): Promise<void> {
    const log = this.log.child({ module: 'collector' });
    const backoff = new Backoff(1000, 30_000);
    for (;;) {
      try {
        const v = await this.store.open('migrate');
        if (v.migratedFrom !== v.version) log.info({ schema: this.config.postgres.schema, from: v.migratedFrom, to: v.version }, 'created or migrated the tables');
        break;
      } catch (err) {
        await this.store.close();
        if (this.stopping) return;
        if (!(err instanceof StoreUnavailableError)) throw err;
        if (backoff.attempts === 0) log.warn({ err: err.message }, 'PostgreSQL unreachable; waiting for it before subscribing');
        await new Promise<void>((r) => {
          const t = setTimeout(r, backoff.next());
          this.wake = () => {
            clearTimeout(t);
            r();
          };
        });
      }
    }
    if (this.stopping) return;
    const decodeOpts: DecodeOptions = { topicPrefix: this.config.mqtt.topicPrefix, maxMessageBytes: this.config.limits.maxMessageBytes, rejectedPayloadBytes: this.config.limits.rejectedPayloadBytes };
    this.subscriber.on('message', (m) => this.writer.push(decodeMessage(m.topic, m.payload, m.contentType, decodeOpts, m.retained), m.ack));
    this.writer.on('unavailable', ({ error }) => {
      log.warn({ err: error }, 'PostgreSQL unavailable: disconnecting from the broker (the session keeps what is not stored) until it answers');
      void this.subscriber.pause();
    });
    this.writer.on('available', ({ downMs }) => {
      log.info({ downMs }, 'PostgreSQL answers again: reconnecting to the broker');
      if (!this.stopping) this.subscriber.resume();
    });
    this.writer.on('committed', (r) => {
      this.stored?.changed(r.devices);
      this.since.messages += r.messages;
      this.since.readings += r.readings;
      this.since.duplicates += r.duplicates;
    });
    this.writer.on('rejected', (r) => {
      this.since.rejected++;
      log.debug(r, 'message rejected');
    });
    this.summaryTimer = setInterval(() => this.summary(log), SUMMARY_EVERY_MS);
    this.summaryTimer.unref();
    this.subscriber.on('subscribed', () => this.stored?.reconnected());
    this.stored?.start();
    this.pruneTimer = setInterval(() => void this.pruneStatusHistory(log), PRUNE_EVERY_MS);
    this.pruneTimer.unref();
    if (this.page) {
      await this.page.store.open('read');
      await this.page.server.start();
    }
    this.subscriber.start();
  }

  /** Stops taking messages, lets the transaction in progress commit and its PUBACKs go, disconnects. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.wake?.();
    clearInterval(this.summaryTimer);
    this.stored?.stop();
    clearInterval(this.pruneTimer);
    await this.page?.server.stop();
    await this.page?.store.close();
    await this.writer.stop(this.config.postgres.statementTimeoutMs);
    await this.subscriber.stop();
    await this.store.close();
  }

  /** One line for systemd's STATUS=. */
  statusLine(): string {
    const t = this.writer.totals;
    const db = this.writer.available ? 'database up' : 'database UNAVAILABLE';
    const broker = this.subscriber.connected ? 'broker connected' : `broker ${this.subscriber.lastError ? 'unreachable' : 'connecting'}`;
    return `${broker}, ${db}; ${t.readings} readings stored, ${t.duplicates} duplicates, ${t.rejected} rejected since start`;
  }

  private async pruneStatusHistory(log: Logger): Promise<void> {
    try {
      const rows = await this.store.pruneStatusHistory(this.config.statusHistory.keepMs);
      if (rows > 0) log.debug({ rows }, 'status history pruned');
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'status history not pruned (tried again in an hour)');
    }
  }

  private summary(log: Logger): void {
    const s = this.since;
    if (s.messages === 0 && s.rejected === 0) return;
    log.info({ ...s, periodS: SUMMARY_EVERY_MS / 1000, inFlight: this.subscriber.inFlight }, 'stored');
    this.since = { readings: 0, duplicates: 0, rejected: 0, messages: 0 };
  }
}
