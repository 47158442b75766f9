import type { ScheduledTask } from 'node-cron';
import type { Logger } from '../util/logger.js';
import type { Sensor } from '../sensors/index.js';
import { FLAG_CLOCK_SUSPECT, type NewReading, type Tick } from '../sensors/reading.js';
import { PeriodicClock, periodicSeconds, type PeriodicEntry } from './periodic-clock.js';
import { nodeCron } from './cron.js';
import { firstThenEvery, Repeating } from '../util/log-throttle.js';

/** Where the sampler puts readings: the store's append (through the storage keeper, which may refuse them). */
export interface ReadingSink {
  appendTicks(ticks: readonly Tick[]): unknown;
}

/** A sensor that keeps failing (a loose wire): a warning at the first failure, at a new kind of failure and every 100th. */
const SENSOR_FAILURES = firstThenEvery(100);

export interface ScheduledSensor {
  sensor: Sensor;
  schedule: string;
  readAtStart?: boolean;
}

export interface SamplerOptions {
  /** a read that takes longer is abandoned and counted as an error */
  readTimeoutMs: number;
  /** readings taken while the clock shows an earlier time are flagged: the clock is not set yet */
  clockFloorMs: number;
  now?: () => number;
}

export interface SensorStats {
  ticks: number;
  readings: number;
  errors: number;
  skipped: number;
  lastError?: string;
  /** failures in a row; 0 once a read works again */
  failing: number;
}

export interface SamplerStats {
  sensors: Record<string, SensorStats>;
  written: number;
  /** readings that were taken but could not be stored (disk full, I/O error) */
  lost: number;
  lastWriteError?: string;
}

/**
 * Runs each sensor on its schedule (every-N-seconds ones on one shared PeriodicClock, the rest on
 * node-cron; no overlapping runs) and writes what it reads at once. Readings of sensors that finish
 * in the same event-loop turn share one transaction (one fsync). A failing sensor is logged and
 * counted; it never stops the others. A failing write is logged and counted as lost; sampling goes on.
 */
export class Sampler {
  private readonly tasks: ScheduledTask[] = [];
  private clock?: PeriodicClock<PeriodicEntry & { sensor: string }>;
  private readonly inFlight = new Set<Promise<void>>();
  /** sensors whose read has not returned, even if it was abandoned after its timeout */
  private readonly busy = new Set<string>();
  private queue: Tick[] = [];
  private flushScheduled = false;
  private stopped = false;
  readonly stats: SamplerStats = { sensors: {}, written: 0, lost: 0 };
  /** failed writes: one error line when the trouble starts, then one per 1000 lost readings */
  private readonly writeTrouble = new Repeating(firstThenEvery(1000));

  constructor(
    private readonly sensors: readonly ScheduledSensor[],
    private readonly sink: ReadingSink,
    private readonly log: Logger,
    private readonly opts: SamplerOptions,
  ) {
    for (const { sensor } of sensors) this.stats.sensors[sensor.name] = { ticks: 0, readings: 0, errors: 0, skipped: 0, failing: 0 };
  }

  start(): void {
    const cronLogger = {
      info: (m: string) => this.log.debug({ cron: true }, m),
      warn: (m: string) => this.log.debug({ cron: true }, m),
      error: (m: string | Error, e?: Error) => this.log.error({ err: e ?? m }, 'scheduler error'),
      debug: () => {},
    };
    const periodic: Array<PeriodicEntry & { sensor: string }> = [];
    for (const { sensor, schedule } of this.sensors) {
      const period = periodicSeconds(schedule);
      if (period !== undefined) {
        // a tick while the previous read still runs is skipped (and counted) by runTick
        periodic.push({ period, fire: () => void this.tick(sensor), sensor: sensor.name });
        continue;
      }
      const task = nodeCron().schedule(schedule, () => this.tick(sensor), { name: sensor.name, noOverlap: true, logger: cronLogger });
      task.on('execution:overlap', () => {
        this.stats.sensors[sensor.name].skipped++;
      });
      this.tasks.push(task);
    }
    if (periodic.length > 0) {
      const clock = new PeriodicClock(periodic, () => (this.opts.now ?? Date.now)(), (missed) => {
        for (const e of missed) this.stats.sensors[e.sensor].skipped++;
        this.log.warn({ sensors: missed.map((e) => e.sensor) }, 'sampling tick missed (event loop blocked or clock jumped)');
      });
      this.clock = clock;
      clock.start();
    }
    this.log.info({ sensors: this.sensors.map((s) => `${s.sensor.name}@${s.schedule}`) }, 'sampling started');
    for (const s of this.sensors) if (s.readAtStart) void this.tick(s.sensor);
  }

  /** One sampling tick of one sensor. Never throws. */
  tick(sensor: Sensor): Promise<void> {
    const p = this.runTick(sensor).finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
    return p;
  }

  private async runTick(sensor: Sensor): Promise<void> {
    if (this.stopped) return;
    const st = (this.stats.sensors[sensor.name] ??= { ticks: 0, readings: 0, errors: 0, skipped: 0, failing: 0 });
    if (this.busy.has(sensor.name)) {
      // a read that hung past its timeout is still running: never start a second one beside it
      st.skipped++;
      return;
    }
    const now = this.opts.now ?? Date.now;
    const tsMs = now();
    st.ticks++;
    let readings: NewReading[];
    try {
      this.busy.add(sensor.name);
      let out: NewReading[] | Promise<NewReading[]> | undefined;
      try {
        out = sensor.read();
      } finally {
        // a synchronous read is over here; an asynchronous one when its promise settles
        if (!isThenable(out)) this.busy.delete(sensor.name);
      }
      // only an asynchronous read can hang while the loop goes on: only it gets a timer (a timer
      // per tick was a large part of the write path's cost: see docs/benchmarks.md)
      readings = isThenable(out)
        ? await withTimeout(
            Promise.resolve(out).finally(() => this.busy.delete(sensor.name)),
            this.opts.readTimeoutMs,
            `sensor ${sensor.name} did not answer within ${this.opts.readTimeoutMs} ms`,
          )
        : out!;
    } catch (err) {
      st.errors++;
      st.failing++;
      const message = (err as Error).message;
      if (message !== st.lastError || SENSOR_FAILURES(st.failing)) {
        this.log.warn({ sensor: sensor.name, err, failing: st.failing, errors: st.errors }, 'sensor read failed');
      } else {
        this.log.debug({ sensor: sensor.name, error: message, failing: st.failing }, 'sensor read failed again');
      }
      st.lastError = message;
      return;
    }
    if (st.failing > 0) {
      this.log.info({ sensor: sensor.name, failedBefore: st.failing }, 'sensor reads again');
      st.failing = 0;
    }
    if (readings.length === 0) return;
    st.readings += readings.length;
    this.enqueue({ tsMs, flags: tsMs < this.opts.clockFloorMs ? FLAG_CLOCK_SUSPECT : 0, readings });
  }

  private enqueue(tick: Tick): void {
    this.queue.push(tick);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes everything queued in one transaction. */
  flush(): void {
    this.flushScheduled = false;
    const ticks = this.queue;
    if (ticks.length === 0) return;
    this.queue = [];
    let count = 0;
    for (const t of ticks) count += t.readings.length;
    try {
      this.sink.appendTicks(ticks);
      this.stats.written += count;
      if (this.writeTrouble.ended() > 0) {
        this.log.info({ lost: this.stats.lost }, 'writing readings works again');
        this.stats.lastWriteError = undefined;
      }
    } catch (err) {
      this.stats.lost += count;
      const e = err as Error & { code?: string };
      this.stats.lastWriteError = e.code ?? e.message;
      if (this.writeTrouble.occurred(undefined, count)) {
        this.log.error({ err: e, code: e.code, lostNow: count, lostTotal: this.stats.lost }, 'cannot store readings; they are lost');
      }
    }
  }

  /** Stops scheduling, waits for reads in progress, writes what they produced. */
  async stop(): Promise<void> {
    this.clock?.stop();
    for (const t of this.tasks) await t.stop();
    for (const t of this.tasks) await t.destroy();
    this.tasks.length = 0;
    await Promise.allSettled([...this.inFlight]);
    this.stopped = true;
    this.flush();
  }
}

function isThenable<T>(v: T | Promise<T> | undefined): v is Promise<T> {
  return typeof (v as { then?: unknown } | undefined)?.then === 'function';
}

function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
