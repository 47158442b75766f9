import type { MqttLink } from '../mqtt/link.js';
import type { Logger } from '../util/logger.js';
import { redactUrl } from '../util/url.js';

/**
 * Writes what the link does into sync_log, for `edge-sensor log` and `status`: every connect and
 * disconnect (not the ones we asked for), and the first failed connect of an outage, not every one.
 */
export class LinkJournal {
  constructor(
    private readonly store: { logEvent(type: string, details: Record<string, unknown>): void },
    private readonly sync: { window(): number; readonly stats: { inFlightBatches: number } },
    private readonly url: string,
    private readonly log: Logger,
  ) {}

  follow(link: { on: MqttLink['on'] }): void {
    link.on('connect', () => this.write('connected', { url: redactUrl(this.url), window: this.sync.window() }));
    link.on('disconnect', ({ reason }) => {
      if (reason !== 'paused' && reason !== 'stopped') this.write('disconnected', { reason, inFlightBatches: this.sync.stats.inFlightBatches });
    });
    link.on('connectFailed', ({ reason, first }) => {
      if (first) this.write('connect_failed', { reason });
    });
  }

  /** Never throws: the link must not fail because its journal cannot be written (disk full). */
  private write(type: string, details: Record<string, unknown>): void {
    try {
      this.store.logEvent(type, details);
    } catch (err) {
      this.log.debug({ err, type }, 'cannot write a link event to sync_log');
    }
  }
}
