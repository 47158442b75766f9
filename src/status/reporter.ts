import type { Logger } from '../util/logger.js';
import type { LinkLimits } from '../mqtt/link.js';
import type { StatusPayload } from './device-status.js';

export interface StatusPublisher {
  readonly connected: boolean;
  publish(topic: string, payload: string, opts: { retain?: boolean }, timeoutMs: number): Promise<void>;
  on(event: 'connect', fn: (limits: LinkLimits) => void): unknown;
}

/** Publishes the retained status on connect and every intervalMs while connected. */
export class StatusReporter {
  private timer?: NodeJS.Timeout;
  private stopped = false;
  /** after a goodbye: no periodic or on-connect status until resume() (it would say "online" after it) */
  private quiet = false;

  constructor(
    private readonly link: StatusPublisher,
    private readonly opts: { topic: string; intervalMs: number; timeoutMs: number },
    private readonly collect: () => StatusPayload,
    private readonly log: Logger,
  ) {}

  start(): void {
    this.link.on('connect', () => {
      if (!this.quiet) void this.publishNow();
    });
    this.timer = setInterval(() => {
      if (this.link.connected && !this.quiet) void this.publishNow();
    }, this.opts.intervalMs);
    this.timer.unref();
  }

  /** Publishes the current status now; failures are logged, never thrown (the next one will follow). */
  async publishNow(override?: Partial<StatusPayload>): Promise<boolean> {
    if (this.stopped || !this.link.connected) return false;
    let payload: string;
    try {
      payload = JSON.stringify({ ...this.collect(), ...override });
    } catch (err) {
      this.log.warn({ err }, 'cannot collect status');
      return false;
    }
    try {
      await this.link.publish(this.opts.topic, payload, { retain: true }, this.opts.timeoutMs);
      return true;
    } catch (err) {
      this.log.debug({ err: (err as Error).message }, 'status publish failed');
      return false;
    }
  }

  /**
   * The last word before going offline (shutdown, offline by choice): from now on nothing
   * periodic is published, so that a status taken a moment earlier cannot arrive after it and
   * leave "online" retained on the broker.
   */
  goodbye(override: Partial<StatusPayload>): Promise<boolean> {
    this.quiet = true;
    return this.publishNow(override);
  }

  /** Periodic and on-connect status again (going online after offline by choice). */
  resume(): void {
    this.quiet = false;
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }
}
