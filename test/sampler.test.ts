import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { Sampler, type ReadingSink } from '../src/sampler/sampler.js';
import { periodicSeconds } from '../src/sampler/periodic-clock.js';
import { Store } from '../src/store/store.js';
import { FLAG_CLOCK_SUSPECT, type Tick } from '../src/sensors/reading.js';
import { SimulatedSensor } from '../src/sensors/simulated.js';
import type { Sensor } from '../src/sensors/index.js';
import { silentLogger } from '../src/util/logger.js';
import { makeTmp } from './helpers/tmp.js';
import { waitFor } from './helpers/process.js';

const sim = (name: string, count = 1) => new SimulatedSensor({ name, unit: 'C', count, min: 0, max: 10, step: 1, seed: 1 });
const failing = (name: string): Sensor => ({
  name,
  type: 'test',
  read: () => {
    throw new Error('I2C bus error');
  },
});
const opts = { readTimeoutMs: 1000, clockFloorMs: 0 };

class MemorySink implements ReadingSink {
  ticks: Tick[] = [];
  calls = 0;
  fail = false;
  /** readings of the writes it refused */
  refused = 0;
  appendTicks(ticks: readonly Tick[]) {
    if (this.fail) {
      this.refused += ticks.reduce((n, t) => n + t.readings.length, 0);
      throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
    }
    this.calls++;
    this.ticks.push(...ticks);
  }
  get readings() {
    return this.ticks.flatMap((t) => t.readings);
  }
}

describe('sampler with fake timers', () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate', 'Date'] });
    vi.setSystemTime(new Date('2026-11-26T10:00:00.500Z'));
  });
  afterEach(() => vi.useRealTimers());

  it('runs each sensor on its own six-field schedule', async () => {
    const sink = new MemorySink();
    const s = new Sampler([{ sensor: sim('every-second'), schedule: '* * * * * *' }, { sensor: sim('every-5s'), schedule: '*/5 * * * * *' }], sink, silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(10_000);
    await s.stop();
    expect(s.stats.sensors['every-second'].readings).toBeGreaterThanOrEqual(9);
    expect(s.stats.sensors['every-second'].readings).toBeLessThanOrEqual(11);
    expect(s.stats.sensors['every-5s'].readings).toBe(2);
    expect(sink.readings).toHaveLength(s.stats.written);
  });

  it('one failing sensor is counted and logged; the others go on', async () => {
    const sink = new MemorySink();
    const s = new Sampler([{ sensor: failing('broken'), schedule: '* * * * * *' }, { sensor: sim('ok'), schedule: '* * * * * *' }], sink, silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(5_000);
    await s.stop();
    expect(s.stats.sensors.broken.errors).toBeGreaterThanOrEqual(4);
    expect(s.stats.sensors.broken.lastError).toMatch(/I2C/);
    expect(s.stats.sensors.ok.readings).toBeGreaterThanOrEqual(4);
    expect(sink.readings.every((r) => r.sensor === 'ok')).toBe(true);
  });

  it('a sensor that keeps failing warns once, not once per tick, and says when it works again', async () => {
    const lines: Array<{ level: number; msg: string }> = [];
    const { pino } = await import('pino');
    const log = pino({ level: 'debug' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    let broken = true;
    const flaky: Sensor = {
      name: 'flaky',
      type: 'test',
      read: () => {
        if (broken) throw new Error('I2C bus error');
        return [{ sensor: 'flaky', value: 1, unit: null }];
      },
    };
    const s = new Sampler([{ sensor: flaky, schedule: '* * * * * *' }], new MemorySink(), log, opts);
    s.start();
    await vi.advanceTimersByTimeAsync(30_000);
    broken = false;
    await vi.advanceTimersByTimeAsync(2_000);
    await s.stop();
    expect(s.stats.sensors.flaky.errors).toBeGreaterThanOrEqual(29);
    const warns = lines.filter((l) => l.level === 40 && l.msg === 'sensor read failed');
    expect(warns).toHaveLength(1);
    expect(lines.some((l) => l.level === 30 && l.msg === 'sensor reads again')).toBe(true);
  });

  it('a sensor that hangs is timed out and skipped, not run twice at once', async () => {
    let running = 0;
    let maxRunning = 0;
    const hanging: Sensor = {
      name: 'slow',
      type: 'test',
      read: () =>
        new Promise((resolve) => {
          running++;
          maxRunning = Math.max(maxRunning, running);
          setTimeout(() => {
            running--;
            resolve([]);
          }, 2500);
        }),
    };
    const s = new Sampler([{ sensor: hanging, schedule: '* * * * * *' }], new MemorySink(), silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(6_000);
    await s.stop();
    expect(s.stats.sensors.slow.errors).toBeGreaterThanOrEqual(1); // 1 s read timeout
    expect(s.stats.sensors.slow.skipped).toBeGreaterThanOrEqual(1); // ticks while the hung read ran
    expect(maxRunning).toBe(1);
  });

  it('groups sensors that tick together into one write', async () => {
    const sink = new MemorySink();
    const sensors = Array.from({ length: 5 }, (_, i) => ({ sensor: sim(`s${i}`), schedule: '* * * * * *' }));
    const s = new Sampler(sensors, sink, silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(3_000);
    await s.stop();
    expect(sink.readings.length).toBeGreaterThanOrEqual(10);
    expect(sink.calls).toBeLessThan(sink.readings.length / 2);
  });

  it('a failed write is counted as lost and sampling continues', async () => {
    const sink = new MemorySink();
    const s = new Sampler([{ sensor: sim('a', 3), schedule: '* * * * * *' }], sink, silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(2_000);
    sink.fail = true;
    await vi.advanceTimersByTimeAsync(2_000);
    sink.fail = false;
    await vi.advanceTimersByTimeAsync(2_000);
    await s.stop();
    expect(s.stats.lost).toBeGreaterThanOrEqual(3);
    expect(sink.refused).toBe(s.stats.lost);
    expect(s.stats.written + s.stats.lost).toBe(s.stats.sensors.a.readings);
    expect(s.stats.lastWriteError).toBeUndefined();
  });

  it('runs every-N-seconds schedules on whole multiples of N, sensors due together in one write', async () => {
    const sink = new MemorySink();
    const s = new Sampler(
      [{ sensor: sim('s1'), schedule: '* * * * * *' }, { sensor: sim('s5'), schedule: '*/5 * * * * *' }, { sensor: sim('s10'), schedule: '*/10 * * * * *' }],
      sink,
      silentLogger(),
      opts,
    );
    s.start();
    await vi.advanceTimersByTimeAsync(20_000);
    await s.stop();
    const at = (name: string) => sink.ticks.filter((t) => t.readings[0].sensor === name).map((t) => t.tsMs);
    expect(at('s1')).toHaveLength(20);
    expect(at('s5').map((t) => new Date(t).getUTCSeconds())).toEqual([5, 10, 15, 20]);
    expect(at('s10').map((t) => new Date(t).getUTCSeconds())).toEqual([10, 20]);
    // at :10 and :20 all three were due: one write each time, not three
    expect(sink.calls).toBe(20);
  });

  it('follows a wall clock that jumps back instead of waiting for the old time', async () => {
    const sink = new MemorySink();
    const s = new Sampler([{ sensor: sim('a'), schedule: '*/5 * * * * *' }], sink, silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(6_000);
    expect(s.stats.sensors.a.readings).toBe(1);
    vi.setSystemTime(Date.now() - 3_600_000); // NTP steps the clock back an hour
    await vi.advanceTimersByTimeAsync(15_000);
    await s.stop();
    // :15 and :20 of the new hour: the tick planned for the old :10 did not hold sampling up for an hour
    expect(s.stats.sensors.a.readings).toBe(3);
  });

  it('a tick that comes more than a second late is skipped and counted, not run late', async () => {
    const sink = new MemorySink();
    const s = new Sampler([{ sensor: sim('a'), schedule: '* * * * * *' }], sink, silentLogger(), opts);
    s.start();
    await vi.advanceTimersByTimeAsync(1_000);
    vi.setSystemTime(Date.now() + 5_000); // the wall clock jumps ahead (or the loop was blocked)
    await vi.advanceTimersByTimeAsync(3_000);
    await s.stop();
    expect(s.stats.sensors.a.skipped).toBe(1);
    expect(s.stats.sensors.a.readings).toBeGreaterThanOrEqual(3);
  });

  it('flags readings taken while the clock is before the floor', async () => {
    const sink = new MemorySink();
    const s = new Sampler([{ sensor: sim('a'), schedule: '* * * * * *' }], sink, silentLogger(), { ...opts, clockFloorMs: Date.parse('2027-01-01') });
    await s.tick(sim('a'));
    vi.runAllTicks();
    await vi.advanceTimersByTimeAsync(1);
    expect(sink.ticks[0].flags & FLAG_CLOCK_SUSPECT).toBe(FLAG_CLOCK_SUSPECT);
    await s.stop();
  });
});

describe('sampler into a real store', () => {
  it('writes ticks to SQLite and stops cleanly', async () => {
    const tmp = makeTmp();
    const store = new Store(join(tmp.dir, 'x.db'));
    const s = new Sampler([{ sensor: sim('a', 100), schedule: '* * * * * *' }], store, silentLogger(), opts);
    await s.tick(sim('a', 100));
    await s.tick(sim('b', 50));
    await s.stop();
    expect(store.countPending()).toBe(150);
    store.close();
    tmp.cleanup();
  });
});

describe('readAtStart', () => {
  it('takes one reading at start, before the first scheduled time', async () => {
    const tmp = makeTmp();
    const store = new Store(join(tmp.dir, 'start.db'));
    const s = new Sampler([{ sensor: sim('hourly'), schedule: '0 0 * * * *', readAtStart: true }, { sensor: sim('other'), schedule: '0 0 * * * *' }], store, silentLogger(), opts);
    s.start();
    await waitFor(() => store.countPending() > 0, 5000, 'the reading at start');
    // the other sensor would have been read in the same turn and stored in the same write
    expect(store.countPending()).toBe(1);
    expect(store.takePending(1)[0].sensor).toBe('hourly');
    await s.stop();
    store.close();
    tmp.cleanup();
  });
});

describe('periodicSeconds', () => {
  it('recognises every-N-seconds schedules whose N divides a minute, nothing else', () => {
    expect(periodicSeconds('* * * * * *')).toBe(1);
    expect(periodicSeconds('*/5 * * * * *')).toBe(5);
    expect(periodicSeconds(' */30  * * * * * ')).toBe(30);
    expect(periodicSeconds('*/7 * * * * *')).toBeUndefined(); // :56 then :00, not periodic
    expect(periodicSeconds('*/5 * * * *')).toBeUndefined(); // five fields: minutes
    expect(periodicSeconds('0 * * * * *')).toBeUndefined();
    expect(periodicSeconds('*/5 * 9-17 * * *')).toBeUndefined();
    expect(periodicSeconds('*/0 * * * * *')).toBeUndefined();
  });
});

describe('node-cron is loaded only for schedules the periodic clock cannot run', () => {
  // in a process of its own: the test runner's module cache is shared between test files
  const probe = (schedules: string[]) => {
    const script = `
      import { createRequire, register } from 'node:module';
      import { MessageChannel } from 'node:worker_threads';
      // an import goes through the loader's hooks, a require() into require.cache: both are watched
      const seen = [];
      let sentinelSeen;
      const sentinel = new Promise((r) => (sentinelSeen = r));
      const { port1, port2 } = new MessageChannel();
      port1.on('message', (url) => (url.includes('edge-sentinel') ? sentinelSeen() : seen.push(url)));
      const hooks = 'let port; export function initialize(d) { port = d.port; } export async function load(url, context, next) { if (url.includes("node-cron") || url.includes("edge-sentinel")) port.postMessage(url); return next(url, context); }';
      register('data:text/javascript,' + encodeURIComponent(hooks), { data: { port: port2 }, transferList: [port2] });
      const { configSchema } = await import(${JSON.stringify(new URL('../dist/config/schema.js', import.meta.url).href)});
      const { Sampler } = await import(${JSON.stringify(new URL('../dist/sampler/sampler.js', import.meta.url).href)});
      const { SimulatedSensor } = await import(${JSON.stringify(new URL('../dist/sensors/simulated.js', import.meta.url).href)});
      const { silentLogger } = await import(${JSON.stringify(new URL('../dist/util/logger.js', import.meta.url).href)});
      const schedules = ${JSON.stringify(schedules)};
      const parsed = configSchema.safeParse({ device: { id: 'd' }, sensors: schedules.map((schedule, i) => ({ type: 'simulated', name: 's' + i, schedule })) });
      const s = new Sampler(schedules.map((schedule, i) => ({ sensor: new SimulatedSensor({ name: 's' + i, unit: 'C', count: 1, min: 0, max: 1, step: 1, seed: 1 }), schedule })), { appendTicks() {} }, silentLogger(), { readTimeoutMs: 1000, clockFloorMs: 0 });
      s.start();
      await s.stop();
      // messages from the hooks arrive in order: once the sentinel's is here, every earlier one is too
      await import('data:text/javascript,export const sentinel = "edge-sentinel"');
      await sentinel;
      port1.close();
      const loaded = seen.length > 0 || Object.keys(createRequire(import.meta.url).cache).some((k) => k.includes('node-cron'));
      console.log(JSON.stringify({ valid: parsed.success, loaded }));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).toBe('');
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as { valid: boolean; loaded: boolean };
  };

  it('every-N-seconds schedules validate and run without it', () => {
    expect(probe(['*/5 * * * * *', '* * * * * *'])).toEqual({ valid: true, loaded: false });
  });

  it('any other schedule loads it, to validate and to run', () => {
    expect(probe(['*/5 * * * * *', '0 */2 * * * *'])).toEqual({ valid: true, loaded: true });
  });
});
