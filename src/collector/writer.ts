import { EventEmitter } from 'node:events';
import type { Logger } from '../util/logger.js';
import { Backoff } from '../util/backoff.js';
import type { Decoded, RejectReason } from './decode.js';
import type { ItemOutcome, StoreItem } from './pg/write.js';
import { StoreUnavailableError } from './pg/errors.js';

/** What the writer needs from the database: one transaction per call, and a liveness check. */
export interface ReadingsStore {
  /** Commits the items (one outcome each, in order) or throws; StoreUnavailableError: nothing can be counted on. */
  write(items: readonly StoreItem[]): Promise<ItemOutcome[]>;
  ping(): Promise<void>;
}

export interface CommitReport {
  /** devices whose readings, drops or status the transaction changed */
  devices: string[];
  messages: number;
  readings: number;
  duplicates: number;
  rejected: number;
  ms: number;
}

type WriterEvents = {
  committed: [CommitReport];
  rejected: [{ topic: string; device: string | null; reason: RejectReason; detail: string }];
  /** the database failed: nothing queued will be acknowledged; the broker side must disconnect */
  unavailable: [{ error: string }];
  available: [{ downMs: number }];
};

interface Queued {
  item: Decoded;
  ack: () => void;
  readings: number;
}

/** transactions in flight at once: one runs while the next is built and waits for its row locks */
const TRANSACTIONS = 2;

export interface WriterOptions {
  /** readings per transaction at most (a single larger message still goes alone) */
  maxReadings: number;
  retry: { initialDelayMs: number; maxDelayMs: number };
}

/**
 * Takes decoded messages in arrival order and stores them in transactions: what arrives while
 * one is in progress goes into the next, so a backlog makes large transactions and a trickle
 * small ones. Each message is acknowledged only after the transaction holding it
 * committed, in arrival order. When the database fails, nothing queued is acknowledged, the
 * writer says so ('unavailable') and checks the database with backoff until it answers.
 */
export class Writer extends EventEmitter<WriterEvents> {
  private queue: Queued[] = [];
  private inFlight = 0;
  /** settles when every batch started so far is acknowledged (or given up) */
  private acked: Promise<void> = Promise.resolve();
  /** counts outages: a batch started before the current one began is never acknowledged */
  private epoch = 0;
  private down = false;
  private downSince = 0;
  private stopped = false;
  private probeTimer?: NodeJS.Timeout;
  private readonly backoff: Backoff;
  readonly totals = { messages: 0, readings: 0, duplicates: 0, rejected: 0, transactions: 0, lastCommitAt: 0 };

  constructor(
    private readonly store: ReadingsStore,
    private readonly opts: WriterOptions,
    private readonly log: Logger,
  ) {
    super();
    this.backoff = new Backoff(opts.retry.initialDelayMs, opts.retry.maxDelayMs);
  }

  get available(): boolean {
    return !this.down;
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Queues a message; ack is called after its commit. Ignored while the database is down (the broker delivers it again). */
  push(item: Decoded, ack: () => void): void {
    if (this.stopped || this.down) return;
    this.queue.push({ item, ack, readings: item.kind === 'readings' ? item.readings.seq.length : 0 });
    this.pump();
  }

  /** Lets the transactions in progress finish (within timeoutMs), then takes nothing more. */
  async stop(timeoutMs: number): Promise<void> {
    this.stopped = true;
    clearTimeout(this.probeTimer);
    await Promise.race([this.acked, new Promise((r) => setTimeout(r, timeoutMs).unref())]);
    this.queue = [];
  }

  /**
   * Starts transactions while fewer than TRANSACTIONS are in flight: the next one is built and
   * sent while PostgreSQL works on the last (it waits there for the device rows the last one
   * holds). Acknowledgements still go in arrival order: a batch's after the batch before it.
   */
  private pump(): void {
    while (this.inFlight < TRANSACTIONS && this.queue.length > 0 && !this.down && !this.stopped) {
      let n = 0;
      let readings = 0;
      while (n < this.queue.length && (n === 0 || readings + this.queue[n].readings <= this.opts.maxReadings)) readings += this.queue[n++].readings;
      const take = this.queue.splice(0, n);
      const items = take.map((q) => q.item).filter((i): i is StoreItem => i.kind !== 'ignored');
      const epoch = this.epoch;
      const t0 = performance.now();
      const written = items.length > 0 ? this.store.write(items) : Promise.resolve([]);
      written.catch(() => {}); // observed below, once the batch before it is acknowledged
      this.inFlight++;
      // the chain never rejects: one failure must not stop every later batch from being settled
      this.acked = this.acked
        .then(async () => {
          let outcomes: ItemOutcome[];
          try {
            outcomes = await written;
          } catch (err) {
            if (epoch === this.epoch) this.goDown(err);
            return;
          }
          // after an outage began nothing more is acknowledged, committed or not: it comes again
          if (epoch !== this.epoch) return;
          try {
            for (const q of take) q.ack();
            this.report(take.length, outcomes, performance.now() - t0);
          } catch (err) {
            this.log.error({ err }, 'acknowledging a committed batch failed');
          }
          this.log.trace({ messages: take.length, readings, ms: Math.round(performance.now() - t0), queued: this.queue.length }, 'committed');
        })
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }

  private report(messages: number, outcomes: readonly ItemOutcome[], ms: number): void {
    const r: CommitReport = { devices: [], messages, readings: 0, duplicates: 0, rejected: 0, ms };
    const devices = new Set<string>();
    for (const o of outcomes) {
      if (o.kind !== 'rejected') devices.add(o.device);
      if (o.kind === 'stored') {
        r.readings += o.stored;
        r.duplicates += o.duplicates;
      } else if (o.kind === 'rejected') {
        r.rejected++;
        this.emitSafely('rejected', { topic: o.topic, device: o.device, reason: o.reason, detail: o.detail });
      }
    }
    r.devices = [...devices];
    const t = this.totals;
    t.messages += messages;
    t.readings += r.readings;
    t.duplicates += r.duplicates;
    t.rejected += r.rejected;
    t.transactions++;
    t.lastCommitAt = Date.now();
    this.emitSafely('committed', r);
  }

  private goDown(err: unknown): void {
    const unexpected = !(err instanceof StoreUnavailableError);
    // a bug is no reason to acknowledge what was not stored: treated as an outage, and loud
    if (unexpected) this.log.error({ err }, 'unexpected error while storing; nothing of the batch is acknowledged');
    this.down = true;
    this.epoch++;
    this.downSince = Date.now();
    this.queue = [];
    this.backoff.reset();
    this.emitSafely('unavailable', { error: (err as Error).message });
    this.scheduleProbe();
  }

  private scheduleProbe(): void {
    if (this.stopped) return;
    this.probeTimer = setTimeout(() => {
      this.store.ping().then(
        () => {
          if (this.stopped) return;
          this.down = false;
          this.emitSafely('available', { downMs: Date.now() - this.downSince });
        },
        () => this.scheduleProbe(),
      );
    }, this.backoff.next());
  }

  private emitSafely<K extends keyof WriterEvents>(event: K, ...args: WriterEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: WriterEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'a writer listener failed');
    }
  }
}
