import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { isLinux, join, readText, type HostRoots } from './host-fs.js';
import { firstOnly, Repeating } from '../../util/log-throttle.js';

export interface MemInfo {
  totalBytes: number;
  availableBytes: number;
}

/** MemTotal and MemAvailable from /proc/meminfo (kB). */
export function parseMeminfo(text: string): MemInfo | undefined {
  const kb = (key: string) => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : undefined;
  };
  const totalBytes = kb('MemTotal');
  const availableBytes = kb('MemAvailable');
  if (!totalBytes || availableBytes === undefined) return undefined;
  return { totalBytes, availableBytes };
}

/** Memory in use (percent of total, as `free` counts it: total minus available) or available bytes. */
export class MemorySensor implements Sensor {
  readonly type = 'memory';
  private readonly unreadable = new Repeating(firstOnly);

  constructor(
    readonly name: string,
    private readonly measure: 'used-percent' | 'available-bytes',
    private readonly unit: string,
    private readonly roots: HostRoots,
    private readonly ctx: SensorContext,
  ) {}

  /** On Linux a synchronous read of /proc/meminfo; elsewhere systeminformation. */
  read(): NewReading[] | Promise<NewReading[]> {
    if (!isLinux) return this.readPortable();
    const text = readText(join(this.roots.procRoot, 'meminfo'));
    return this.reading(text === undefined ? undefined : parseMeminfo(text));
  }

  private async readPortable(): Promise<NewReading[]> {
    const si = await import('systeminformation');
    const m = await si.mem();
    return this.reading({ totalBytes: m.total, availableBytes: m.available });
  }

  private reading(info: MemInfo | undefined): NewReading[] {
    if (!info) {
      if (this.unreadable.occurred()) {
        this.ctx.warn({ sensor: this.name }, 'cannot read memory figures; this sensor reports nothing');
      }
      return [];
    }
    this.unreadable.ended();
    const value =
      this.measure === 'used-percent'
        ? Math.round((10000 * (info.totalBytes - info.availableBytes)) / info.totalBytes) / 100
        : info.availableBytes;
    return [{ sensor: this.name, value, unit: this.unit }];
  }
}
