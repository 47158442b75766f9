import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { join, listDir, readTextAsync } from '../host/host-fs.js';
import { firstOnly, powersOfTen, Repeating } from '../../util/log-throttle.js';

/** What the w1_therm driver reported for one conversion. */
export type W1Result = { ok: true; milli: number } | { ok: false; reason: 'crc' | 'power-on' | 'no-data' | 'unparsable' | 'read-error' };

/** The DS18B20's scratchpad after power-on, before any conversion: 85.000 °C exactly. */
const POWER_ON_MILLI = 85_000;

/**
 * Parses a w1_slave file:
 *   72 01 4b 46 7f ff 0e 10 57 : crc=57 YES
 *   72 01 4b 46 7f ff 0e 10 57 t=23125
 * A bad CRC ends line 1 with NO. An all-zero scratchpad passes the CRC (its CRC is 0) but is what
 * a sensor that lost power or its data line returns, so it is rejected too.
 */
export function parseW1Slave(text: string): W1Result {
  const [crcLine = '', dataLine = ''] = text.split('\n');
  if (!/\bYES\s*$/.test(crcLine)) return { ok: false, reason: 'crc' };
  const bytes = crcLine.split(':')[0].trim().split(/\s+/);
  if (bytes.length >= 9 && bytes.every((b) => /^0+$/.test(b))) return { ok: false, reason: 'no-data' };
  const m = /t=(-?\d+)\s*$/.exec(dataLine);
  if (!m) return { ok: false, reason: 'unparsable' };
  return checkMilli(Number(m[1]));
}

/** Parses the `temperature` attribute of newer kernels (millidegrees, CRC already checked by the driver). */
export function parseW1Temperature(text: string): W1Result {
  const t = text.trim();
  if (!/^-?\d+$/.test(t)) return { ok: false, reason: 'unparsable' };
  return checkMilli(Number(t));
}

function checkMilli(milli: number): W1Result {
  if (milli === POWER_ON_MILLI) return { ok: false, reason: 'power-on' };
  return { ok: true, milli };
}

const DS18B20_ID = /^28-[0-9a-f]{12}$/;

export interface Ds18b20Options {
  name: string;
  unit: string;
  /** device ids to read; empty: every 28-* device found at each tick */
  ids: readonly string[];
  /** reading name per device id; default `{name}.{id}` */
  names: Readonly<Record<string, string>>;
}

/**
 * DS18B20 1-Wire thermometers through the kernel's w1_therm driver: one reading (°C) per device
 * and tick. Failed conversions (bad CRC, the 85 °C power-on value, an all-zero scratchpad) are
 * rejected and counted, with a warning the first time and at 10, 100, 1000... per device;
 * a device that is missing warns once until it is back.
 */
export class Ds18b20Sensor implements Sensor {
  readonly type = 'ds18b20';
  readonly name: string;
  /** rejected conversions per device id and reason */
  readonly rejected = new Map<string, Record<string, number>>();
  private readonly missing = new Set<string>();
  private readonly noneFound = new Repeating(firstOnly);

  constructor(
    private readonly opts: Ds18b20Options,
    private readonly sysRoot: string,
    private readonly ctx: SensorContext,
  ) {
    this.name = opts.name;
  }

  private get devicesDir(): string {
    return join(this.sysRoot, 'bus/w1/devices');
  }

  async read(): Promise<NewReading[]> {
    const ids = this.opts.ids.length > 0 ? this.opts.ids : this.discover();
    // one bus master converts one device at a time anyway; reading them together costs nothing
    const results = await Promise.all(ids.map((id) => this.readDevice(id)));
    return results.filter((r): r is NewReading => r !== undefined);
  }

  private discover(): string[] {
    const ids = listDir(this.devicesDir)
      .filter((d) => DS18B20_ID.test(d))
      .sort();
    if (ids.length > 0) this.noneFound.ended();
    else if (this.noneFound.occurred()) {
      this.ctx.warn(
        { sensor: this.name, dir: this.devicesDir },
        'no DS18B20 found on the 1-Wire bus (is dtoverlay=w1-gpio set and a sensor wired?); reporting nothing until one appears',
      );
    }
    return ids;
  }

  private async readDevice(id: string): Promise<NewReading | undefined> {
    const dir = join(this.devicesDir, id);
    let result: W1Result;
    try {
      result = await readTextAsync(join(dir, 'w1_slave')).then(parseW1Slave, async (err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
        return parseW1Temperature(await readTextAsync(join(dir, 'temperature')));
      });
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'ENOENT') {
        if (!this.missing.has(id)) {
          this.missing.add(id);
          this.ctx.warn({ sensor: this.name, id, dir }, 'DS18B20 not found (unplugged, or a wrong id?); no readings from it until it is back');
        }
        return undefined;
      }
      // the driver answers EIO when the device stops responding mid-read (and, through the
      // temperature attribute, when the CRC is bad)
      result = { ok: false, reason: 'read-error' };
    }
    this.missing.delete(id);
    if (!result.ok) {
      this.countRejected(id, result.reason);
      return undefined;
    }
    return { sensor: this.opts.names[id] ?? `${this.name}.${id}`, value: result.milli / 1000, unit: this.opts.unit };
  }

  private countRejected(id: string, reason: string): void {
    let counts = this.rejected.get(id);
    if (!counts) this.rejected.set(id, (counts = {}));
    const n = (counts[reason] = (counts[reason] ?? 0) + 1);
    if (powersOfTen(n)) {
      this.ctx.warn({ sensor: this.name, id, reason, count: n, rejected: { ...counts } }, 'DS18B20 reading rejected (bad CRC, power-on 85 °C, no data or a read error); nothing stored for it');
    }
  }
}
