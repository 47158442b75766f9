import { EventEmitter } from 'node:events';
import type { Logger } from '../util/logger.js';
import type { StatusPayload } from '../status/device-status.js';

/** The config key of the operator's choice ('online' or 'offline'); it survives a restart. */
export const MODE_KEY = 'mode';

/** Whether the operator chose offline, as saved in the database. */
export function savedOffline(store: { getConfig(key: string): string | undefined }): boolean {
  return store.getConfig(MODE_KEY) === 'offline';
}

export interface ModeParts {
  store: { getConfig(key: string): string | undefined; setConfig(key: string, value: string): void; logEvent(type: string, details: Record<string, unknown>): void };
  link: { readonly connected: boolean; start(): void; resume(): void; connectNow(): void; pause(): Promise<void>; once(event: 'connect', fn: () => void): unknown };
  sync: { setPaused(paused: boolean): void; drain(deadlineMs: number): Promise<unknown> };
  status: { resume(): void; goodbye(override: Partial<StatusPayload>): Promise<boolean> };
}

/**
 * Offline by choice: syncing stops and the link disconnects, sampling goes on; online again resumes
 * both. The choice is saved and applied at the next start. Changes run one after the other: an
 * `online` that came while an `offline` still drained would otherwise be undone by its late disconnect.
 */
export class OnlineMode extends EventEmitter<{ changed: [online: boolean] }> {
  private offline = false;
  private change: Promise<void> = Promise.resolve();

  constructor(
    private readonly parts: ModeParts,
    /** stayReachable: remote commands are on, so offline by choice keeps the connection for them (else `online` could never arrive) */
    private readonly opts: { drainTimeoutMs: number; connectWaitMs?: number; stayReachable?: boolean },
    private readonly log: Logger,
  ) {
    super();
  }

  get offlineByChoice(): boolean {
    return this.offline;
  }

  /** Applies the saved choice: online starts the link; offline keeps it down and the sync loop paused. */
  start(): void {
    this.offline = savedOffline(this.parts.store);
    if (this.offline) {
      this.log.warn('offline by choice (edge-sensor online to resume): sampling, not syncing');
      this.parts.sync.setPaused(true);
      if (this.opts.stayReachable) this.parts.link.start();
    } else {
      this.parts.link.start();
    }
  }

  /** Resolves once the change is done: offline after the drain and the goodbye, online once connected (or after a few seconds). */
  set(online: boolean): Promise<void> {
    const next = this.change.then(() => this.apply(online));
    this.change = next.catch(() => {});
    return next;
  }

  private async apply(online: boolean): Promise<void> {
    const { store, link, sync, status } = this.parts;
    store.setConfig(MODE_KEY, online ? 'online' : 'offline');
    if (online === !this.offline) return;
    this.offline = !online;
    store.logEvent(online ? 'went_online' : 'went_offline', { by: 'operator' });
    if (online) {
      this.log.info('going online (operator)');
      status.resume();
      sync.setPaused(false);
      const connected = this.connected();
      link.resume();
      link.connectNow();
      // the link keeps trying with backoff; the operator gets an answer either way
      await connected;
    } else {
      this.log.info('going offline (operator): finishing in-flight batches, then disconnecting');
      sync.setPaused(true);
      await sync.drain(this.opts.drainTimeoutMs);
      await status.goodbye({ state: 'offline', reason: 'offline by choice', mode: 'offline-by-choice' });
      if (!this.opts.stayReachable) await link.pause();
    }
    this.emit('changed', online);
  }

  private connected(): Promise<void> {
    if (this.parts.link.connected) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(resolve, this.opts.connectWaitMs ?? 3000);
      this.parts.link.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
