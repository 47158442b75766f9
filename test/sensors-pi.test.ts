import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { Ds18b20Sensor, parseW1Slave, parseW1Temperature } from '../src/sensors/sysfs/ds18b20.js';
import { IioSensor, planChannels } from '../src/sensors/sysfs/iio.js';
import { PiThrottledSensor, parseThrottled } from '../src/sensors/sysfs/pi-throttled.js';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { createSensor } from '../src/sensors/index.js';
import { makeTmp } from './helpers/tmp.js';
import { GET_THROTTLED, addIioDevices as iioTree, addThermometer as thermometer, put, w1Slave as w1 } from './helpers/fake-sysfs.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

let roots = 0;
const fakeSys = () => {
  const d = join(tmp.dir, `sys${roots++}`);
  mkdirSync(d, { recursive: true });
  return d;
};
const warnings = () => {
  const list: Array<{ msg: string; obj: Record<string, unknown> }> = [];
  return { list, ctx: { warn: (obj: Record<string, unknown>, msg: string) => list.push({ msg, obj }) } };
};

const W1_ZEROS = '00 00 00 00 00 00 00 00 00 : crc=00 YES\n00 00 00 00 00 00 00 00 00 t=0\n';

describe('ds18b20 (1-Wire thermometers)', () => {
  it('parses w1_slave and the newer temperature attribute, rejecting bad CRC, 85 °C at power-on and an all-zero scratchpad', () => {
    expect(parseW1Slave(w1(21562))).toEqual({ ok: true, milli: 21562 });
    expect(parseW1Slave(w1(-10125))).toEqual({ ok: true, milli: -10125 });
    expect(parseW1Slave(w1(21562, 'NO'))).toEqual({ ok: false, reason: 'crc' });
    expect(parseW1Slave(w1(85000))).toEqual({ ok: false, reason: 'power-on' });
    expect(parseW1Slave(W1_ZEROS)).toEqual({ ok: false, reason: 'no-data' });
    expect(parseW1Slave('')).toEqual({ ok: false, reason: 'crc' });
    expect(parseW1Temperature('23125\n')).toEqual({ ok: true, milli: 23125 });
    expect(parseW1Temperature('85000\n')).toEqual({ ok: false, reason: 'power-on' });
    expect(parseW1Temperature('\n')).toEqual({ ok: false, reason: 'unparsable' });
  });

  it('finds every 28-* device, one reading each, and counts rejected conversions', async () => {
    const sys = fakeSys();
    thermometer(sys, '28-0316a2797aff', w1(21562));
    thermometer(sys, '28-000005e2fdc3', w1(-1062));
    thermometer(sys, '28-0000075c8b11', w1(85000)); // just powered: not a temperature
    put(join(sys, 'bus/w1/devices/28-00000a1b2c3d/temperature'), '19875\n'); // kernel with only the temperature attribute
    put(join(sys, 'bus/w1/devices/w1_bus_master1/w1_master_slaves'), '28-0316a2797aff\n'); // the master is not a thermometer
    thermometer(sys, '10-000802b4a6c1', w1(30000)); // a DS18S20: only when named by id
    const w = warnings();
    const s = new Ds18b20Sensor({ name: 'w1', unit: '°C', ids: [], names: { '28-000005e2fdc3': 'outside' } }, sys, w.ctx);
    const got = await s.read();
    expect(got).toEqual([
      { sensor: 'outside', value: -1.062, unit: '°C' },
      { sensor: 'w1.28-00000a1b2c3d', value: 19.875, unit: '°C' },
      { sensor: 'w1.28-0316a2797aff', value: 21.562, unit: '°C' },
    ]);
    expect(s.rejected.get('28-0000075c8b11')).toEqual({ 'power-on': 1 });
    expect(w.list.map((x) => x.msg)).toEqual([expect.stringMatching(/rejected/)]);
    // a CRC failure on every tick: counted every time, logged at the 1st and 10th only
    thermometer(sys, '28-0316a2797aff', w1(21562, 'NO'));
    for (let i = 0; i < 12; i++) await s.read();
    expect(s.rejected.get('28-0316a2797aff')).toEqual({ crc: 12 });
    const crcWarnings = w.list.filter((x) => x.obj.id === '28-0316a2797aff');
    expect(crcWarnings.map((x) => x.obj.count)).toEqual([1, 10]);
  });

  it('reads only the configured ids; a missing one warns once until it is back, and again when it goes', async () => {
    const sys = fakeSys();
    thermometer(sys, '28-0316a2797aff', w1(20000));
    thermometer(sys, '28-000005e2fdc3', w1(25000));
    const w = warnings();
    const s = new Ds18b20Sensor({ name: 'tank', unit: '°C', ids: ['28-0316a2797aff', '28-00000badbeef'], names: {} }, sys, w.ctx);
    for (let i = 0; i < 5; i++) expect(await s.read()).toEqual([{ sensor: 'tank.28-0316a2797aff', value: 20, unit: '°C' }]);
    expect(w.list).toHaveLength(1);
    expect(w.list[0]).toMatchObject({ msg: expect.stringMatching(/not found/), obj: { id: '28-00000badbeef' } });
    thermometer(sys, '28-00000badbeef', w1(4500));
    expect(await s.read()).toHaveLength(2);
    rmSync(join(sys, 'bus/w1/devices/28-00000badbeef'), { recursive: true });
    await s.read();
    await s.read();
    expect(w.list).toHaveLength(2);
  });

  it('with no thermometer on the bus: one warning, no readings, no errors', async () => {
    const sys = fakeSys();
    const w = warnings();
    const s = new Ds18b20Sensor({ name: 'w1', unit: '°C', ids: [], names: {} }, sys, w.ctx);
    for (let i = 0; i < 5; i++) expect(await s.read()).toEqual([]);
    expect(w.list).toHaveLength(1);
    expect(w.list[0].msg).toMatch(/no DS18B20 found/);
    thermometer(sys, '28-0316a2797aff', w1(22000));
    expect(await s.read()).toEqual([{ sensor: 'w1.28-0316a2797aff', value: 22, unit: '°C' }]);
  });
});

describe('iio (Linux Industrial I/O devices)', () => {
  it('reads a BME280 by name: °C, % relative humidity and hPa, from milli °C, milli % and kPa', async () => {
    const sys = fakeSys();
    iioTree(sys);
    const w = warnings();
    const s = new IioSensor({ name: 'bme280', device: 'bme280', channels: undefined, names: { pressure: 'air-pressure' } }, sys, w.ctx);
    expect(await s.read()).toEqual([
      { sensor: 'bme280.temperature', value: 21.51, unit: '°C' },
      { sensor: 'bme280.humidity', value: 45.678, unit: '%' },
      { sensor: 'air-pressure', value: 1013.253, unit: 'hPa' },
    ]);
    expect(w.list).toEqual([]);
  });

  it('reads raw counts with scale and offset, a device by index, and only the configured channels', async () => {
    const sys = fakeSys();
    iioTree(sys);
    const light = new IioSensor({ name: 'light', device: 0, channels: undefined, names: {} }, sys, warnings().ctx);
    expect(await light.read()).toEqual([{ sensor: 'light.illuminance', value: 1000, unit: 'lx' }]); // 1200 * 0.833333, to 0.001 lx
    const off = new IioSensor({ name: 't', device: 'tmp-offset', channels: undefined, names: {} }, sys, warnings().ctx);
    expect(await off.read()).toEqual([{ sensor: 't.temperature', value: 5, unit: '°C' }]); // (1000 - 500) * 10 milli °C
    const w = warnings();
    const some = new IioSensor({ name: 'b', device: 'bme280', channels: ['temperature', 'illuminance'], names: {} }, sys, w.ctx);
    expect(await some.read()).toEqual([{ sensor: 'b.temperature', value: 21.51, unit: '°C' }]);
    expect(w.list).toEqual([expect.objectContaining({ msg: expect.stringMatching(/lacks some configured channels/), obj: expect.objectContaining({ absent: ['illuminance'] }) })]);
  });

  it('prefers _input over _raw, and accepts indexed and shared-scale channels', () => {
    expect(planChannels(['in_temp_input', 'in_temp_raw'], ['temperature'])).toEqual([{ channel: 'temperature', input: 'in_temp_input' }]);
    expect(planChannels(['in_illuminance0_raw', 'in_illuminance_scale'], ['illuminance'])).toEqual([
      { channel: 'illuminance', raw: 'in_illuminance0_raw', scale: 'in_illuminance_scale', offset: undefined },
    ]);
    expect(planChannels(['name', 'in_voltage0_raw'], ['temperature', 'humidity', 'pressure', 'illuminance'])).toEqual([]);
  });

  it('a missing device warns once and is picked up when it appears; a failing channel is counted, the others still read', async () => {
    const sys = fakeSys();
    const w = warnings();
    const s = new IioSensor({ name: 'env', device: 'bme280', channels: undefined, names: {} }, sys, w.ctx);
    for (let i = 0; i < 4; i++) expect(await s.read()).toEqual([]);
    expect(w.list).toHaveLength(1);
    expect(w.list[0].msg).toMatch(/IIO device not found/);
    iioTree(sys);
    expect(await s.read()).toHaveLength(3);
    // an I2C error on one channel (here: a read that fails with EISDIR)
    const hum = join(sys, 'bus/iio/devices/iio:device1/in_humidityrelative_input');
    rmSync(hum);
    mkdirSync(hum);
    for (let i = 0; i < 3; i++) expect((await s.read()).map((r) => r.sensor)).toEqual(['env.temperature', 'env.pressure']);
    expect(s.errors).toEqual({ humidity: 3 });
    expect(w.list.filter((x) => /channel read failed/.test(x.msg))).toHaveLength(1);
    // unplugged: nothing, one more warning, then back
    rmSync(join(sys, 'bus/iio/devices/iio:device1'), { recursive: true });
    for (let i = 0; i < 3; i++) expect(await s.read()).toEqual([]);
    expect(w.list.filter((x) => /IIO device not found/.test(x.msg))).toHaveLength(2);
    iioTree(sys);
    expect(await s.read()).toHaveLength(3);
  });
});

describe('pi-throttled (firmware get_throttled)', () => {
  it('parses the bitmask as the kernel and vcgencmd print it', () => {
    expect(parseThrottled('50005\n')).toBe(0x50005);
    expect(parseThrottled('throttled=0x0')).toBe(0);
    expect(parseThrottled('0x80008')).toBe(0x80008);
    expect(parseThrottled('junk')).toBeUndefined();
  });

  it('reports the raw bitmask, one 0/1 reading per flag, or both', async () => {
    const sys = fakeSys();
    put(join(sys, GET_THROTTLED), '50005\n'); // under-voltage now and throttled now, both also "has occurred"
    expect(await new PiThrottledSensor('power', 'bitmask', sys, warnings().ctx).read()).toEqual([{ sensor: 'power', value: 0x50005, unit: null }]);
    const both = await new PiThrottledSensor('power', 'both', sys, warnings().ctx).read();
    expect(Object.fromEntries(both.map((r) => [r.sensor, r.value]))).toEqual({
      power: 327685,
      'power.under-voltage': 1,
      'power.arm-freq-capped': 0,
      'power.throttled': 1,
      'power.soft-temp-limit': 0,
      'power.under-voltage-occurred': 1,
      'power.arm-freq-capped-occurred': 0,
      'power.throttled-occurred': 1,
      'power.soft-temp-limit-occurred': 0,
    });
    expect(await new PiThrottledSensor('power', 'flags', sys, warnings().ctx).read()).toHaveLength(8);
  });

  it('finds the firmware node under another platform folder name', async () => {
    const sys = fakeSys();
    put(join(sys, 'devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled'), '0\n');
    expect(await new PiThrottledSensor('p', 'bitmask', sys, warnings().ctx).read()).toEqual([{ sensor: 'p', value: 0, unit: null }]);
  });

  it('off a Raspberry Pi: one warning and nothing else', async () => {
    const w = warnings();
    const s = new PiThrottledSensor('p', 'both', fakeSys(), w.ctx);
    for (let i = 0; i < 5; i++) expect(await s.read()).toEqual([]);
    expect(w.list).toHaveLength(1);
    expect(w.list[0].msg).toMatch(/no readable get_throttled/);
  });
});

describe('Pi sensor configuration', () => {
  it('accepts every example of docs/raspberry-pi.md and builds its sensors', () => {
    const doc = readFileSync(fileURLToPath(new URL('../docs/raspberry-pi.md', import.meta.url)), 'utf8');
    const blocks = [...doc.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]).filter((b) => /type: (ds18b20|iio|pi-throttled)/.test(b));
    expect(blocks.length).toBeGreaterThanOrEqual(3);
    const types = new Set<string>();
    for (const b of blocks) {
      const c = parseConfig(parse(b));
      for (const s of c.sensors) {
        types.add(s.type);
        expect(createSensor(s, c.host, warnings().ctx).name).toBe(s.name);
      }
    }
    expect([...types]).toEqual(expect.arrayContaining(['ds18b20', 'iio', 'pi-throttled']));
  });

  it('fills defaults and rejects bad ids, unknown channels and unknown keys, naming the path', () => {
    const c = parseConfig({
      sensors: [
        { type: 'ds18b20', name: 'w1', schedule: '*/30 * * * * *' },
        { type: 'iio', name: 'env', schedule: '* * * * *', device: 'bme280' },
        { type: 'pi-throttled', name: 'power', schedule: '* * * * *' },
      ],
    });
    expect(c.sensors[0]).toMatchObject({ ids: [], names: {} });
    expect(c.sensors[1]).toMatchObject({ device: 'bme280', names: {} });
    expect(c.sensors[2]).toMatchObject({ report: 'bitmask' });
    let err: unknown;
    try {
      parseConfig({
        sensors: [
          { type: 'ds18b20', name: 'w1', schedule: '* * * * *', ids: ['28-XYZ'] },
          { type: 'iio', name: 'env', schedule: '* * * * *', device: 'bme280', channels: ['co2'] },
          { type: 'pi-throttled', name: 'power', schedule: '* * * * *', unit: 'V' },
        ],
      });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const paths = (err as ConfigError).problems.map((p) => p.path);
    expect(paths).toEqual(expect.arrayContaining(['sensors[0].ids[0]', 'sensors[1].channels[0]', 'sensors[2].unit']));
  });
});
