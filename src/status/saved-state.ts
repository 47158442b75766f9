import type { MqttLink } from '../mqtt/link.js';
import type { Logger } from '../util/logger.js';
import type { DaemonState } from './device-status.js';

/** The config key under which the daemon's state is saved (read by `edge-sensor status`). */
export const STATE_KEY = 'daemon_state';

/**
 * Keeps the daemon's state (pid, link, last error) saved in the database, so that `status` can tell
 * it when the daemon does not answer: at start and stop, at a mode change, at every connect and
 * disconnect, and when the cause of failing connects changes (broker up again, but refusing our
 * certificate); a repeated cause is not written again.
 */
export class SavedState {
  private savedReason?: string;

  constructor(
    private readonly store: { readonly isOpen: boolean; setConfig(key: string, value: string): void },
    private readonly status: { saved(): DaemonState },
    private readonly log: Logger,
  ) {}

  follow(link: { on: MqttLink['on'] }): void {
    link.on('connect', () => this.save());
    link.on('disconnect', () => this.save());
    link.on('connectFailed', ({ reason, first }) => {
      if (!first && reason === this.savedReason) return;
      this.savedReason = reason;
      this.save();
    });
  }

  /** Never throws: a state that cannot be saved (disk full) is only older when read. */
  save(): void {
    if (!this.store.isOpen) return;
    try {
      this.store.setConfig(STATE_KEY, JSON.stringify(this.status.saved()));
    } catch (err) {
      this.log.debug({ err }, 'cannot save daemon state');
    }
  }
}
