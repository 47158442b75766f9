import type { Daemon } from './daemon.js';
import type { Logger } from './util/logger.js';
import { EXIT } from './exit-codes.js';

/**
 * Runs the daemon of `edge-sensor run`. A database found damaged while running is replaced by a
 * fresh daemon on a fresh database: the process, and systemd's view of it, keep running. SIGTERM
 * or SIGINT stops it cleanly; a second signal gives up waiting.
 */
export class Supervisor {
  private current: Daemon;
  private replacing?: Promise<void>;
  private signalled?: NodeJS.Signals;
  private onSignal?: (signal: NodeJS.Signals) => void;
  private onSecondSignal?: () => void;

  constructor(
    private readonly make: (replaceDatabase?: string) => Daemon,
    private readonly log: Logger,
  ) {
    this.current = this.watch(make());
  }

  /** The daemon running now (another one after a replacement). */
  get daemon(): Daemon {
    return this.current;
  }

  /** Listens for SIGTERM and SIGINT; first thing, so that one that comes while starting still ends in a clean stop. */
  listen(signals: { on(event: NodeJS.Signals, fn: (signal: NodeJS.Signals) => void): unknown } = process): void {
    const handle = (signal: NodeJS.Signals) => {
      if (this.signalled) {
        this.log.warn({ signal }, 'second signal: exiting now');
        this.onSecondSignal?.();
        return;
      }
      this.signalled = signal;
      this.onSignal?.(signal);
    };
    signals.on('SIGTERM', handle);
    signals.on('SIGINT', handle);
  }

  /** Starts the daemon; when that fails it is stopped again and the error thrown. */
  async start(): Promise<void> {
    try {
      await this.current.start();
    } catch (err) {
      await this.current.stop('start failed').catch(() => {});
      throw err;
    }
  }

  /**
   * Resolves with the exit code once a signal came (maybe before this call) and the daemon stopped:
   * 0 after a clean stop, 1 when stopping failed or a second signal cut it short.
   * `stopping` is told first, with the signal.
   */
  untilStopped(stopping: (signal: NodeJS.Signals) => void): Promise<number> {
    return new Promise((resolve) => {
      this.onSecondSignal = () => resolve(EXIT.FAILURE);
      this.onSignal = (signal) => {
        stopping(signal);
        this.stop(signal).then(
          () => resolve(EXIT.OK),
          (err) => {
            this.log.error({ err }, 'error while stopping');
            resolve(EXIT.FAILURE);
          },
        );
      };
      if (this.signalled) this.onSignal(this.signalled);
    });
  }

  private async stop(reason: string): Promise<void> {
    await this.replacing;
    await this.current.stop(reason);
  }

  private watch(daemon: Daemon): Daemon {
    // once: a damaged database is reported by whichever part of the daemon hits it first
    daemon.once('damaged', (reason) => {
      this.log.fatal({ reason }, 'database damaged while running; replacing it');
      if (this.signalled || this.replacing) return;
      this.replacing = this.replace(daemon, reason)
        .catch((err) => this.log.fatal({ err }, 'could not restart on a fresh database'))
        .finally(() => (this.replacing = undefined));
    });
    return daemon;
  }

  private async replace(damaged: Daemon, reason: string): Promise<void> {
    await damaged.stop('database damaged');
    this.current = this.watch(this.make(reason));
    await this.current.start();
  }
}
