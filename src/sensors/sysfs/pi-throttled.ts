import { existsSync } from 'node:fs';
import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { join, listDir, readTextAsync } from '../host/host-fs.js';
import { firstOnly, Repeating } from '../../util/log-throttle.js';

/** Bits of the firmware's get_throttled value (as `vcgencmd get_throttled` prints them). */
export const THROTTLED_FLAGS = [
  [0, 'under-voltage'],
  [1, 'arm-freq-capped'],
  [2, 'throttled'],
  [3, 'soft-temp-limit'],
  [16, 'under-voltage-occurred'],
  [17, 'arm-freq-capped-occurred'],
  [18, 'throttled-occurred'],
  [19, 'soft-temp-limit-occurred'],
] as const;

/** Where Raspberry Pi OS's firmware driver exposes it; other SoCs name the platform folder differently. */
const KNOWN_PATH = 'devices/platform/soc/soc:firmware/get_throttled';
const REDISCOVER_MS = 10 * 60_000;

/** Parses `50005`, `0x50005` or `throttled=0x50005`. */
export function parseThrottled(text: string): number | undefined {
  const m = /^(?:throttled=)?(?:0x)?([0-9a-f]{1,8})$/i.exec(text.trim());
  return m ? parseInt(m[1], 16) : undefined;
}

/** Finds get_throttled under {sysRoot}: the usual path, else any platform folder's `*:firmware`. */
export function findGetThrottled(sysRoot: string): string | undefined {
  const platform = join(sysRoot, 'devices/platform');
  const candidates = [join(sysRoot, KNOWN_PATH)];
  for (const bus of listDir(platform)) {
    for (const dev of listDir(join(platform, bus))) {
      if (dev.endsWith(':firmware')) candidates.push(join(platform, bus, dev, 'get_throttled'));
    }
  }
  return candidates.find((p) => existsSync(p));
}

/**
 * Raspberry Pi under-voltage and throttling, from the firmware's get_throttled bitmask: the
 * bitmask itself (`report: bitmask`), one 0/1 reading per flag (`flags`), or both. Reading the
 * file asks the firmware over the mailbox: no vcgencmd process. Off a Pi it warns once.
 */
export class PiThrottledSensor implements Sensor {
  readonly type = 'pi-throttled';
  private path: string | undefined;
  private lastLookup = -Infinity;
  private readonly absent = new Repeating(firstOnly);

  constructor(
    readonly name: string,
    private readonly report: 'bitmask' | 'flags' | 'both',
    private readonly sysRoot: string,
    private readonly ctx: SensorContext,
    private readonly now: () => number = Date.now,
  ) {}

  async read(): Promise<NewReading[]> {
    const value = await this.readBitmask();
    if (value === undefined) {
      if (this.absent.occurred()) {
        this.ctx.warn(
          { sensor: this.name, sysRoot: this.sysRoot, path: join(this.sysRoot, KNOWN_PATH) },
          'no readable get_throttled (not a Raspberry Pi, or its firmware driver is not loaded); reporting nothing until it appears',
        );
      }
      return [];
    }
    this.absent.ended();
    const out: NewReading[] = [];
    if (this.report !== 'flags') out.push({ sensor: this.name, value, unit: null });
    if (this.report !== 'bitmask') {
      for (const [bit, flag] of THROTTLED_FLAGS) out.push({ sensor: `${this.name}.${flag}`, value: (value >>> bit) & 1, unit: null });
    }
    return out;
  }

  private async readBitmask(): Promise<number | undefined> {
    const t = this.now();
    if (!this.path && t - this.lastLookup >= REDISCOVER_MS) {
      this.lastLookup = t;
      this.path = findGetThrottled(this.sysRoot);
    }
    if (!this.path) return undefined;
    try {
      return parseThrottled(await readTextAsync(this.path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') this.path = undefined; // gone: look again later
      return undefined;
    }
  }
}
