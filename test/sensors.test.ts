import { afterAll, describe, expect, it, vi } from 'vitest';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SimulatedSensor } from '../src/sensors/simulated.js';
import { CpuTemperatureSensor, findCpuThermalZone } from '../src/sensors/host/cpu-temperature.js';
import { CpuLoadSensor, parseProcStat } from '../src/sensors/host/cpu-load.js';
import { MemorySensor, parseMeminfo } from '../src/sensors/host/memory.js';
import { DiskSensor, usageFromStatfs } from '../src/sensors/host/disk.js';
import { makeTmp } from './helpers/tmp.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

function fakeRoot(name: string) {
  const root = join(tmp.dir, name);
  const proc = join(root, 'proc');
  const sys = join(root, 'sys');
  mkdirSync(proc, { recursive: true });
  mkdirSync(sys, { recursive: true });
  return { procRoot: proc, sysRoot: sys };
}
function zone(sysRoot: string, n: number, type: string, milli: number | string) {
  const d = join(sysRoot, 'class/thermal', `thermal_zone${n}`);
  mkdirSync(d, { recursive: true });
  writeFileSync(join(d, 'type'), type + '\n');
  writeFileSync(join(d, 'temp'), `${milli}\n`);
}
const warnings = () => {
  const list: string[] = [];
  return { list, ctx: { warn: (_o: Record<string, unknown>, m: string) => list.push(m) } };
};

describe('simulated sensor', () => {
  it('is reproducible with a seed and stays within its bounds', () => {
    const opts = { name: 'sim', unit: 'C', count: 500, min: 10, max: 12, step: 0.5, seed: 42 };
    const a = new SimulatedSensor(opts).read();
    const b = new SimulatedSensor(opts).read();
    expect(a).toEqual(b);
    expect(a).toHaveLength(500);
    expect(a.every((x) => x.value! >= 10 && x.value! <= 12 && x.sensor === 'sim' && x.unit === 'C')).toBe(true);
    const c = new SimulatedSensor({ ...opts, seed: 43 }).read();
    expect(c).not.toEqual(a);
    // a walk, not noise: consecutive values differ by at most one step
    for (let i = 1; i < a.length; i++) expect(Math.abs(a[i].value! - a[i - 1].value!)).toBeLessThanOrEqual(0.5 + 1e-9);
  });
});

describe('host sensors on fake /proc and /sys trees', () => {
  it('cpu-temperature prefers the CPU zone and reads millidegrees', async () => {
    const roots = fakeRoot('t1');
    zone(roots.sysRoot, 0, 'acpitz', 30000);
    zone(roots.sysRoot, 1, 'cpu-thermal', 48312);
    expect(findCpuThermalZone(roots.sysRoot)).toMatch(/thermal_zone1$/);
    const w = warnings();
    const s = new CpuTemperatureSensor('cpu-temp', '°C', roots, w.ctx);
    expect(await s.read()).toEqual([{ sensor: 'cpu-temp', value: 48.31, unit: '°C' }]);
    expect(w.list).toEqual([]);
  });

  it('cpu-temperature without a thermal zone warns once and reports nothing', async () => {
    const roots = fakeRoot('t2');
    const w = warnings();
    const s = new CpuTemperatureSensor('cpu-temp', '°C', roots, w.ctx);
    for (let i = 0; i < 5; i++) expect(await s.read()).toEqual([]);
    expect(w.list).toHaveLength(1);
    expect(w.list[0]).toMatch(/no CPU temperature/);
  });

  it('cpu-temperature finds a zone that appears later (rediscovery) and survives a vanished one', async () => {
    const roots = fakeRoot('t3');
    let now = 0;
    const w = warnings();
    const s = new CpuTemperatureSensor('t', '°C', roots, w.ctx, () => now);
    expect(await s.read()).toEqual([]);
    zone(roots.sysRoot, 0, 'cpu-thermal', 50000);
    now += 11 * 60_000;
    expect(await s.read()).toEqual([{ sensor: 't', value: 50, unit: '°C' }]);
    rmSync(join(roots.sysRoot, 'class'), { recursive: true });
    expect(await s.read()).toEqual([]);
  });

  it('cpu-load computes utilisation from /proc/stat deltas', async () => {
    expect(parseProcStat('cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n')).toEqual({ busy: 200, total: 1000 });
    expect(parseProcStat('garbage')).toBeUndefined();
    const roots = fakeRoot('l1');
    const stat = join(roots.procRoot, 'stat');
    writeFileSync(stat, 'cpu  100 0 100 800 0 0 0 0 0 0\n');
    const s = new CpuLoadSensor('load', '%', roots, warnings().ctx);
    // +300 busy (user) of +400 total since the constructor's baseline: 75 %
    writeFileSync(stat, 'cpu  400 0 100 900 0 0 0 0 0 0\n');
    expect(await s.read()).toEqual([{ sensor: 'load', value: 75, unit: '%' }]);
    writeFileSync(stat, 'cpu  400 0 100 1000 100 0 0 0 0 0\n'); // idle and iowait only
    expect(await s.read()).toEqual([{ sensor: 'load', value: 0, unit: '%' }]);
  });

  it('memory reports used percent as total minus available, or available bytes', async () => {
    const text = 'MemTotal:        1000 kB\nMemFree:          100 kB\nMemAvailable:     250 kB\n';
    expect(parseMeminfo(text)).toEqual({ totalBytes: 1024000, availableBytes: 256000 });
    const roots = fakeRoot('m1');
    writeFileSync(join(roots.procRoot, 'meminfo'), text);
    expect(await new MemorySensor('mem', 'used-percent', '%', roots, warnings().ctx).read()).toEqual([{ sensor: 'mem', value: 75, unit: '%' }]);
    expect(await new MemorySensor('mem', 'available-bytes', 'B', roots, warnings().ctx).read()).toEqual([{ sensor: 'mem', value: 256000, unit: 'B' }]);
    const w = warnings();
    const missing = new MemorySensor('mem', 'used-percent', '%', fakeRoot('m2'), w.ctx);
    expect(await missing.read()).toEqual([]);
    expect(await missing.read()).toEqual([]);
    expect(w.list).toHaveLength(1);
  });

  it('disk reports usage like df through statfs, and warns once for a missing mount', async () => {
    expect(usageFromStatfs({ bsize: 4096, blocks: 100, bfree: 30, bavail: 20 })).toEqual({ usedPercent: 77.78, freeBytes: 20 * 4096 });
    const statfs = vi.fn(async () => ({ bsize: 4096, blocks: 100, bfree: 30, bavail: 20 }));
    expect(await new DiskSensor('root', '/', 'used-percent', '%', warnings().ctx, statfs).read()).toEqual([{ sensor: 'root', value: 77.78, unit: '%' }]);
    expect(statfs).toHaveBeenCalledWith('/');
    const w = warnings();
    const real = new DiskSensor('gone', join(tmp.dir, 'no/such/mount'), 'free-bytes', 'B', w.ctx);
    expect(await real.read()).toEqual([]);
    expect(await real.read()).toEqual([]);
    expect(w.list).toHaveLength(1);
    const here = await new DiskSensor('tmp', tmp.dir, 'free-bytes', 'B', warnings().ctx).read();
    expect(here[0].value).toBeGreaterThan(0);
  });
});
