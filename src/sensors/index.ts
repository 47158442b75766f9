import type { SensorConfig } from '../config/schema.js';
import type { Sensor, SensorContext } from './sensor.js';
import { SimulatedSensor } from './simulated.js';
import { CpuTemperatureSensor } from './host/cpu-temperature.js';
import { CpuLoadSensor } from './host/cpu-load.js';
import { MemorySensor } from './host/memory.js';
import { DiskSensor } from './host/disk.js';
import { Ds18b20Sensor } from './sysfs/ds18b20.js';
import { IioSensor } from './sysfs/iio.js';
import { PiThrottledSensor } from './sysfs/pi-throttled.js';
import type { HostRoots } from './host/host-fs.js';

export type { Sensor, SensorContext } from './sensor.js';

/** Builds a sensor from its config section. */
export function createSensor(cfg: SensorConfig, roots: HostRoots, ctx: SensorContext): Sensor {
  switch (cfg.type) {
    case 'simulated':
      return new SimulatedSensor(cfg);
    case 'cpu-temperature':
      return new CpuTemperatureSensor(cfg.name, cfg.unit ?? '°C', roots, ctx);
    case 'cpu-load':
      return new CpuLoadSensor(cfg.name, cfg.unit ?? '%', roots, ctx);
    case 'memory':
      return new MemorySensor(cfg.name, cfg.measure, cfg.unit ?? (cfg.measure === 'used-percent' ? '%' : 'B'), roots, ctx);
    case 'disk':
      return new DiskSensor(cfg.name, cfg.mount, cfg.measure, cfg.unit ?? (cfg.measure === 'used-percent' ? '%' : 'B'), ctx);
    case 'ds18b20':
      return new Ds18b20Sensor({ name: cfg.name, unit: cfg.unit ?? '°C', ids: cfg.ids, names: cfg.names }, roots.sysRoot, ctx);
    case 'iio':
      return new IioSensor({ name: cfg.name, device: cfg.device, channels: cfg.channels, names: cfg.names }, roots.sysRoot, ctx);
    case 'pi-throttled':
      return new PiThrottledSensor(cfg.name, cfg.report, roots.sysRoot, ctx);
  }
}
