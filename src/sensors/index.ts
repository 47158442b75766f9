import type { SensorConfig } from '../config/schema.js';
import type { Sensor, SensorContext } from './sensor.js';
import { SimulatedSensor } from './simulated.js';
import { CpuTemperatureSensor } from './host/cpu-temperature.js';
import { CpuLoadSensor } from './host/cpu-load.js';
import { MemorySensor } from './host/memory.js';
import { DiskSensor } from './host/disk.js';
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
  }
}
