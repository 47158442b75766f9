import type { Logger } from '../util/logger.js';
import type { BatchPublisher } from './sync-loop.js';

export interface DropStore {
  unannouncedDrops(limit?: number): Array<{ id: number; timestamp: string; fromSeq: number; toSeq: number; count: number; reason: string }>;
  markDropsAnnounced(ids: readonly number[]): void;
}

/**
 * Tells consumers which readings the device had to drop (storage full), so that a gap in seq
 * can be told from a delay: `{topicPrefix}/{device}/dropped`, QoS 1, JSON
 * {"device","ranges":[[from,to],...],"count","reasons":[...],"ts"}. Records are marked announced
 * only on PUBACK; until then they are sent again on the next connect.
 */
export class DropAnnouncer {
  private busy = false;
  private soon?: NodeJS.Timeout;

  constructor(
    private readonly store: DropStore,
    private readonly link: BatchPublisher,
    private readonly opts: { topic: string; deviceId: string; timeoutMs: number },
    private readonly log: Logger,
  ) {}

  start(): void {
    this.link.on('connect', () => void this.announce());
  }

  /**
   * Announces within delayMs, once for everything recorded meanwhile: refusals under
   * stop-sampling come a tick at a time, and one message (and log line) per tick would be chatter.
   */
  announceSoon(delayMs: number): void {
    if (this.soon) return;
    this.soon = setTimeout(() => {
      this.soon = undefined;
      void this.announce();
    }, delayMs);
    this.soon.unref();
  }

  stop(): void {
    clearTimeout(this.soon);
    this.soon = undefined;
  }

  /** Sends every unannounced drop record (1,000 ranges per message). Never throws. */
  async announce(): Promise<number> {
    if (this.busy || !this.link.connected) return 0;
    this.busy = true;
    let sent = 0;
    try {
      for (;;) {
        const drops = this.store.unannouncedDrops(1000);
        if (drops.length === 0) break;
        const payload = JSON.stringify({
          device: this.opts.deviceId,
          ranges: drops.map((d) => [d.fromSeq, d.toSeq]),
          count: drops.reduce((n, d) => n + d.count, 0),
          reasons: [...new Set(drops.map((d) => d.reason))],
          ts: new Date().toISOString(),
        });
        await this.link.publish(this.opts.topic, payload, {}, this.opts.timeoutMs);
        this.store.markDropsAnnounced(drops.map((d) => d.id));
        sent += drops.length;
      }
      if (sent > 0) this.log.info({ ranges: sent }, 'announced dropped readings upstream');
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'drop announcement not acknowledged; will retry on the next connect');
    } finally {
      this.busy = false;
    }
    return sent;
  }
}
