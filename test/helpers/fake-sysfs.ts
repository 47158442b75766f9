import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Writes a file of a fake /sys tree, creating its folders. */
export function put(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

/** A w1_slave file as the w1_therm driver writes it, byte for byte. */
export const w1Slave = (milli: number, crc: 'YES' | 'NO' = 'YES') =>
  `72 01 4b 46 7f ff 0e 10 57 : crc=57 ${crc}\n72 01 4b 46 7f ff 0e 10 57 t=${milli}\n`;

export function addThermometer(sysRoot: string, id: string, content: string): void {
  put(join(sysRoot, 'bus/w1/devices', id, 'w1_slave'), content);
}

/** iio:device0 a BH1750 (raw counts and a scale), iio:device1 a BME280 (processed inputs), iio:device2 raw with offset. */
export function addIioDevices(sysRoot: string): void {
  const dev = (n: number, files: Record<string, string>) => {
    for (const [f, v] of Object.entries(files)) put(join(sysRoot, 'bus/iio/devices', `iio:device${n}`, f), v + '\n');
  };
  dev(0, { name: 'bh1750', in_illuminance_raw: '1200', in_illuminance_scale: '0.833333', integration_time: '0.12' });
  dev(1, {
    name: 'bme280',
    in_temp_input: '21510',
    in_humidityrelative_input: '45678',
    in_pressure_input: '101.325312500',
    in_temp_oversampling_ratio: '2',
  });
  dev(2, { name: 'tmp-offset', in_temp_raw: '1000', in_temp_offset: '-500', in_temp_scale: '10' });
}

export const GET_THROTTLED = 'devices/platform/soc/soc:firmware/get_throttled';

export function addThermalZone(sysRoot: string, n: number, type: string, milli: number): void {
  put(join(sysRoot, 'class/thermal', `thermal_zone${n}`, 'type'), type + '\n');
  put(join(sysRoot, 'class/thermal', `thermal_zone${n}`, 'temp'), `${milli}\n`);
}
