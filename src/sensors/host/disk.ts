import { statfs } from 'node:fs/promises';
import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { firstOnly, Repeating } from '../../util/log-throttle.js';

export interface FsUsage {
  usedPercent: number;
  freeBytes: number;
}

/** Usage as df shows it: used / (used + available to unprivileged users). */
export function usageFromStatfs(s: { bsize: number; blocks: number; bfree: number; bavail: number }): FsUsage | undefined {
  const used = s.blocks - s.bfree;
  const denom = used + s.bavail;
  if (!(s.blocks > 0) || denom <= 0) return undefined;
  return { usedPercent: Math.round((10000 * used) / denom) / 100, freeBytes: s.bavail * s.bsize };
}

export type StatfsFn = (path: string) => Promise<{ bsize: number; blocks: number; bfree: number; bavail: number }>;

/** File-system usage of one mount point, through statfs(2): no shell, any platform Node supports. */
export class DiskSensor implements Sensor {
  readonly type = 'disk';
  private readonly unreadable = new Repeating(firstOnly);

  constructor(
    readonly name: string,
    private readonly mount: string,
    private readonly measure: 'used-percent' | 'free-bytes',
    private readonly unit: string,
    private readonly ctx: SensorContext,
    private readonly statfsFn: StatfsFn = (p) => statfs(p),
  ) {}

  async read(): Promise<NewReading[]> {
    let usage: FsUsage | undefined;
    let error: string | undefined;
    try {
      usage = usageFromStatfs(await this.statfsFn(this.mount));
    } catch (err) {
      error = (err as Error).message;
    }
    if (!usage) {
      if (this.unreadable.occurred()) {
        this.ctx.warn({ sensor: this.name, mount: this.mount, error }, 'cannot read file-system usage; this sensor reports nothing until it can');
      }
      return [];
    }
    this.unreadable.ended();
    return [{ sensor: this.name, value: this.measure === 'used-percent' ? usage.usedPercent : usage.freeBytes, unit: this.unit }];
  }
}
