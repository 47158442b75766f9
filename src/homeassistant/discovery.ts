import type { SensorConfig } from '../config/schema.js';
import type { LinkMessage } from '../mqtt/link.js';
import type { Logger } from '../util/logger.js';
import { commandEntities, diagnosticEntities, kindOf, readingEntity, readingKinds, type DiscoveryContext, type DiscoveryMessage, type ReadingKind } from './entities.js';

/** The store's config key holding the discovery topics last announced (a sensor gone from the config gets its topic cleared). */
export const ANNOUNCED_KEY = 'ha_discovery_topics';

export interface DiscoveryLink {
  readonly connected: boolean;
  publish(topic: string, payload: string, opts: { retain?: boolean }, timeoutMs: number): Promise<void>;
  subscribe(filter: string, qos: 0 | 1): void;
  on(event: 'connect', fn: () => void): unknown;
  on(event: 'message', fn: (m: LinkMessage) => void): unknown;
}

export interface DiscoveryOptions {
  timeoutMs: number;
  /** after Home Assistant's birth message, wait a random 0 to this before announcing (a fleet does not answer in step) */
  birthDelayMs: number;
}

/**
 * Home Assistant MQTT discovery: announces the device's entities (retained, QoS 1) at every
 * connection and again after Home Assistant's birth message (`{discoveryPrefix}/status` =
 * `online`), clears the topics of entities no longer configured (an empty retained message), and
 * announces readings first seen while running (thermometers found by looking).
 */
export class Discovery {
  private readonly kinds = new Map<string, ReadingKind>();
  private running?: Promise<void>;
  private again = false;
  private birthTimer?: NodeJS.Timeout;
  private stopped = false;
  /** announcements completed (tests wait for them) */
  announced = 0;

  constructor(
    private readonly link: DiscoveryLink,
    private readonly store: { getConfig(key: string): string | undefined; setConfig(key: string, value: string): void },
    private readonly ctx: DiscoveryContext,
    private readonly sensors: readonly SensorConfig[],
    private readonly opts: DiscoveryOptions,
    private readonly log: Logger,
    private readonly random: () => number = Math.random,
  ) {
    for (const s of sensors) for (const k of readingKinds(s).kinds) this.kinds.set(k.name, k);
  }

  get birthTopic(): string {
    return `${this.ctx.discoveryPrefix}/status`;
  }

  start(): void {
    this.link.on('connect', () => this.request());
    this.link.on('message', (m) => this.onMessage(m));
    this.link.subscribe(this.birthTopic, 1);
  }

  /** Every discovery message for the current config. */
  messages(): DiscoveryMessage[] {
    return [...[...this.kinds.values()].map((k) => readingEntity(this.ctx, k)), ...diagnosticEntities(this.ctx), ...commandEntities(this.ctx)];
  }

  /** Readings seen for the first time: those of a configured sensor whose names are found while running get an entity. */
  seen(names: readonly string[], unitOf: (name: string) => string | null): void {
    let added = false;
    for (const name of names) {
      if (this.kinds.has(name)) continue;
      const k = kindOf(this.sensors, name, unitOf(name));
      if (!k) continue;
      this.kinds.set(name, k);
      added = true;
    }
    if (added) this.request();
  }

  private onMessage(m: LinkMessage): void {
    if (m.topic !== this.birthTopic) return;
    // a retained birth message is an old one: the announcement at connect covers it
    if (m.packet.retain || m.payload.toString() !== 'online') return;
    if (this.birthTimer) return;
    const delay = Math.round(this.random() * this.opts.birthDelayMs);
    this.log.info({ delayMs: delay }, 'Home Assistant came online; announcing the device again');
    this.birthTimer = setTimeout(() => {
      this.birthTimer = undefined;
      this.request();
    }, delay);
  }

  /** Announces soon; a request during an announcement runs one more after it. */
  request(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    // a failure here (the database closed under a stopping daemon) is logged, never unhandled
    this.running = this.announce()
      .catch((err) => this.log.warn({ err: (err as Error).message }, 'Home Assistant discovery failed; announced again at the next connection'))
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }

  private async announce(): Promise<void> {
    if (!this.link.connected) return; // the next connection announces
    const msgs = this.messages();
    const current = new Set(msgs.map((m) => m.topic));
    const before = this.savedTopics();
    const stale = before.filter((t) => !current.has(t));
    const results = await Promise.allSettled([
      ...msgs.map((m) => this.link.publish(m.topic, JSON.stringify(m.config), { retain: true }, this.opts.timeoutMs)),
      // an empty retained message removes the entity from Home Assistant (and the retained config from the broker)
      ...stale.map((t) => this.link.publish(t, '', { retain: true }, this.opts.timeoutMs)),
    ]);
    const failedStale = stale.filter((_, i) => results[msgs.length + i].status === 'rejected');
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    // what could not be cleared is remembered, to be cleared at the next announcement
    this.store.setConfig(ANNOUNCED_KEY, JSON.stringify([...current, ...failedStale]));
    if (failed.length > 0) {
      this.log.warn({ failed: failed.length, of: results.length, err: (failed[0].reason as Error)?.message }, 'Home Assistant discovery incomplete; announced again at the next connection');
      return;
    }
    this.announced++;
    if (stale.length > 0) this.log.info({ removed: stale }, 'Home Assistant entities of sensors no longer configured removed');
    this.log.debug({ entities: msgs.length }, 'Home Assistant discovery announced');
  }

  private savedTopics(): string[] {
    try {
      const v = JSON.parse(this.store.getConfig(ANNOUNCED_KEY) ?? '[]') as unknown;
      return Array.isArray(v) ? v.filter((t): t is string => typeof t === 'string') : [];
    } catch {
      return [];
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.birthTimer);
  }
}
