import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { isLinux, join, listDir, readText, type HostRoots } from './host-fs.js';
import { firstOnly, Repeating } from '../../util/log-throttle.js';

// thermal zone types that are the CPU/SoC on common boards (Raspberry Pi: cpu-thermal)
const CPU_ZONE_TYPES = ['cpu-thermal', 'cpu_thermal', 'soc_thermal', 'soc-thermal', 'x86_pkg_temp', 'cpu0-thermal', 'coretemp'];
const REDISCOVER_MS = 10 * 60_000;

/** Finds the CPU's thermal zone under {sysRoot}/class/thermal; undefined when there is none. */
export function findCpuThermalZone(sysRoot: string): string | undefined {
  const base = join(sysRoot, 'class/thermal');
  const zones = listDir(base)
    .filter((d) => d.startsWith('thermal_zone'))
    .sort((a, b) => Number(a.slice(12)) - Number(b.slice(12)));
  let first: string | undefined;
  for (const z of zones) {
    const dir = join(base, z);
    if (readText(join(dir, 'temp')) === undefined) continue;
    const type = readText(join(dir, 'type'))?.trim() ?? '';
    if (CPU_ZONE_TYPES.includes(type)) return dir;
    first ??= dir;
  }
  return first;
}

/** CPU temperature in °C. A host without a thermal zone warns once and reports nothing. */
export class CpuTemperatureSensor implements Sensor {
  readonly type = 'cpu-temperature';
  private zone: string | undefined;
  private lastLookup = 0;
  private readonly absent = new Repeating(firstOnly);

  constructor(
    readonly name: string,
    private readonly unit: string,
    private readonly roots: HostRoots,
    private readonly ctx: SensorContext,
    private readonly now: () => number = Date.now,
  ) {}

  /** On Linux a synchronous read of the thermal zone; elsewhere systeminformation. */
  read(): NewReading[] | Promise<NewReading[]> {
    return isLinux ? this.reading(this.readLinux()) : this.readPortable().then((v) => this.reading(v));
  }

  private reading(value: number | undefined): NewReading[] {
    if (value === undefined) {
      if (this.absent.occurred()) {
        this.ctx.warn({ sensor: this.name, sysRoot: this.roots.sysRoot }, 'no CPU temperature on this host (no thermal zone); this sensor reports nothing until one appears');
      }
      return [];
    }
    this.absent.ended();
    return [{ sensor: this.name, value, unit: this.unit }];
  }

  private readLinux(): number | undefined {
    const t = this.now();
    if (!this.zone && t - this.lastLookup >= REDISCOVER_MS) {
      this.lastLookup = t;
      this.zone = findCpuThermalZone(this.roots.sysRoot);
    }
    if (!this.zone) return undefined;
    const raw = readText(join(this.zone, 'temp'));
    const milli = raw === undefined ? NaN : Number(raw.trim());
    if (!Number.isFinite(milli)) {
      this.zone = undefined; // gone (or unreadable): look again later
      return undefined;
    }
    return Math.round(milli / 10) / 100;
  }

  private async readPortable(): Promise<number | undefined> {
    const si = await import('systeminformation');
    const t = await si.cpuTemperature();
    return typeof t.main === 'number' && Number.isFinite(t.main) ? t.main : undefined;
  }
}
