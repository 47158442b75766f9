import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { isLinux, join, readText, type HostRoots } from './host-fs.js';
import { firstOnly, Repeating } from '../../util/log-throttle.js';

interface CpuTimes {
  busy: number;
  total: number;
}

/** Parses the aggregate "cpu" line of /proc/stat. idle and iowait count as not busy. */
export function parseProcStat(text: string): CpuTimes | undefined {
  const line = text.split('\n', 1)[0];
  if (!line.startsWith('cpu ')) return undefined;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  if (f.length < 4 || f.some((n) => !Number.isFinite(n))) return undefined;
  // user nice system idle iowait irq softirq steal (guest time is already inside user/nice)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = f[3] + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU utilisation in percent since the previous tick (since start for the first one). */
export class CpuLoadSensor implements Sensor {
  readonly type = 'cpu-load';
  private prev: CpuTimes | undefined;
  private readonly unreadable = new Repeating(firstOnly);

  constructor(
    readonly name: string,
    private readonly unit: string,
    private readonly roots: HostRoots,
    private readonly ctx: SensorContext,
  ) {
    if (isLinux) this.prev = this.sample();
  }

  private sample(): CpuTimes | undefined {
    const text = readText(join(this.roots.procRoot, 'stat'));
    return text === undefined ? undefined : parseProcStat(text);
  }

  /** On Linux a synchronous read of /proc/stat (no timer, no promises per tick); elsewhere systeminformation. */
  read(): NewReading[] | Promise<NewReading[]> {
    if (!isLinux) return this.readPortable();
    let value: number | undefined;
    const cur = this.sample();
    if (cur && this.prev && cur.total > this.prev.total) {
      value = Math.round((10000 * (cur.busy - this.prev.busy)) / (cur.total - this.prev.total)) / 100;
    }
    this.prev = cur ?? this.prev;
    if (cur !== undefined) this.unreadable.ended();
    else if (this.unreadable.occurred()) this.ctx.warn({ sensor: this.name, procRoot: this.roots.procRoot }, 'cannot read CPU times from /proc/stat; this sensor reports nothing');
    return this.reading(value);
  }

  private async readPortable(): Promise<NewReading[]> {
    const si = await import('systeminformation');
    return this.reading(Math.round((await si.currentLoad()).currentLoad * 100) / 100);
  }

  private reading(value: number | undefined): NewReading[] {
    return value === undefined ? [] : [{ sensor: this.name, value, unit: this.unit }];
  }
}
