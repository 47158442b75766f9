import type { NewReading } from '../reading.js';
import type { Sensor, SensorContext } from '../sensor.js';
import { join, listDir, readText, readTextAsync } from '../host/host-fs.js';
import { firstOnly, powersOfTen, Repeating } from '../../util/log-throttle.js';

/**
 * The channels we know, with the IIO ABI's unit (Documentation/ABI/testing/sysfs-bus-iio:
 * the unit of `_input`, and of `(_raw + _offset) * _scale`) and the factor to the unit we report.
 */
export const IIO_CHANNELS = {
  temperature: { prefix: 'temp', unit: '°C', factor: 1 / 1000 }, // milli °C
  humidity: { prefix: 'humidityrelative', unit: '%', factor: 1 / 1000 }, // milli percent (relative humidity)
  pressure: { prefix: 'pressure', unit: 'hPa', factor: 10 }, // kPa
  illuminance: { prefix: 'illuminance', unit: 'lx', factor: 1 }, // lux
} as const;

export type IioChannel = keyof typeof IIO_CHANNELS;
export const IIO_CHANNEL_NAMES = Object.keys(IIO_CHANNELS) as IioChannel[];

/** How to read one channel of a device: a processed `_input`, or `_raw` with scale and offset. */
export type ChannelPlan = { channel: IioChannel; input: string } | { channel: IioChannel; raw: string; scale: string | undefined; offset: string | undefined };

export interface IioOptions {
  name: string;
  /** the device's `name` attribute (driver name, e.g. bme280) or its index N in iio:deviceN */
  device: string | number;
  /** channels to read; undefined: every known channel the device has */
  channels: readonly IioChannel[] | undefined;
  /** reading name per channel; default `{name}.{channel}` */
  names: Readonly<Partial<Record<IioChannel, string>>>;
}

const IIO_DEVICE = /^iio:device(\d+)$/;

/** Finds the device by name (the lowest index when several share it) or by index. */
export function findIioDevice(sysRoot: string, device: string | number): string | undefined {
  const base = join(sysRoot, 'bus/iio/devices');
  const entries = listDir(base)
    .filter((d) => IIO_DEVICE.test(d))
    .sort((a, b) => Number(IIO_DEVICE.exec(a)![1]) - Number(IIO_DEVICE.exec(b)![1]));
  for (const d of entries) {
    const dir = join(base, d);
    if (typeof device === 'number' ? d === `iio:device${device}` : readText(join(dir, 'name'))?.trim() === device) return dir;
  }
  return undefined;
}

/** Which known channels the device has, and through which files (in_temp_input, in_illuminance_raw, ...). */
export function planChannels(files: readonly string[], wanted: readonly IioChannel[]): ChannelPlan[] {
  const has = new Set(files);
  const plans: ChannelPlan[] = [];
  for (const channel of wanted) {
    const p = IIO_CHANNELS[channel].prefix;
    // indexed variants (in_temp0_input) are what some drivers expose for a single channel
    for (const c of [`in_${p}`, `in_${p}0`]) {
      if (has.has(`${c}_input`)) {
        plans.push({ channel, input: `${c}_input` });
        break;
      }
      if (has.has(`${c}_raw`)) {
        // scale and offset may be per channel or shared by the channel type
        const pick = (suffix: string) => [`${c}_${suffix}`, `in_${p}_${suffix}`].find((f) => has.has(f));
        plans.push({ channel, raw: `${c}_raw`, scale: pick('scale'), offset: pick('offset') });
        break;
      }
    }
  }
  return plans;
}

/** The value in the IIO ABI's unit: `_input`, or `(raw + offset) * scale`. */
export async function readChannel(dir: string, plan: ChannelPlan): Promise<number> {
  const num = async (file: string) => {
    const text = (await readTextAsync(join(dir, file))).trim();
    const n = Number(text);
    if (text === '' || !Number.isFinite(n)) throw new Error(`${file}: not a number: ${JSON.stringify(text)}`);
    return n;
  };
  if ('input' in plan) return num(plan.input);
  const [raw, scale, offset] = await Promise.all([num(plan.raw), plan.scale ? num(plan.scale) : 1, plan.offset ? num(plan.offset) : 0]);
  return (raw + offset) * scale;
}

/**
 * Any Linux IIO device (BME280/BMP280/BME680 on I2C, BH1750, SHT3x, DHT11/22, ...): temperature
 * in °C, relative humidity in %, pressure in hPa, illuminance in lx, one reading per channel and
 * tick. A device that is absent warns once and is looked for again at each tick (cheap: a
 * directory listing); a channel that fails to read is counted and logged rarely.
 */
export class IioSensor implements Sensor {
  readonly type = 'iio';
  readonly name: string;
  /** failed channel reads per channel */
  readonly errors: Partial<Record<IioChannel, number>> = {};
  private dir: string | undefined;
  private plans: ChannelPlan[] = [];
  private readonly absent = new Repeating(firstOnly);

  constructor(
    private readonly opts: IioOptions,
    private readonly sysRoot: string,
    private readonly ctx: SensorContext,
  ) {
    this.name = opts.name;
  }

  async read(): Promise<NewReading[]> {
    if (!this.dir && !this.attach()) return [];
    const dir = this.dir!;
    const values = await Promise.allSettled(this.plans.map((p) => readChannel(dir, p)));
    if (values.every((v) => v.status === 'rejected' && (v.reason as NodeJS.ErrnoException).code === 'ENOENT')) {
      // unbound or unplugged: look for it again at the next tick (which warns once if it stays away)
      this.dir = undefined;
      return [];
    }
    const out: NewReading[] = [];
    values.forEach((v, i) => {
      const { channel } = this.plans[i];
      if (v.status === 'rejected') {
        const n = (this.errors[channel] = (this.errors[channel] ?? 0) + 1);
        if (powersOfTen(n)) this.ctx.warn({ sensor: this.name, channel, dir, count: n, error: (v.reason as Error).message }, 'IIO channel read failed; nothing stored for it this time');
        return;
      }
      const { unit, factor } = IIO_CHANNELS[channel];
      // round away the float noise of the unit conversion (0.001 of the unit is below every sensor's resolution)
      const value = Math.round(v.value * factor * 1000) / 1000;
      out.push({ sensor: this.opts.names[channel] ?? `${this.name}.${channel}`, value, unit });
    });
    return out;
  }

  /** Looks for the device and works out its channels; warns once while it is absent. */
  private attach(): boolean {
    const dir = findIioDevice(this.sysRoot, this.opts.device);
    const wanted = this.opts.channels ?? IIO_CHANNEL_NAMES;
    const plans = dir ? planChannels(listDir(dir), wanted) : [];
    if (!dir || plans.length === 0) {
      if (this.absent.occurred()) {
        this.ctx.warn(
          { sensor: this.name, device: this.opts.device, found: dir ?? null, channels: wanted, dir: join(this.sysRoot, 'bus/iio/devices') },
          dir ? 'IIO device has none of the wanted channels; reporting nothing' : 'IIO device not found (driver not loaded, dtoverlay missing, or wrong name?); reporting nothing until it appears',
        );
      }
      return false;
    }
    const absent = wanted.filter((c) => !plans.some((p) => p.channel === c));
    if (this.opts.channels && absent.length > 0) {
      this.ctx.warn({ sensor: this.name, device: this.opts.device, dir, absent }, 'IIO device lacks some configured channels; reading the others');
    }
    this.absent.ended();
    this.dir = dir;
    this.plans = plans;
    return true;
  }
}
