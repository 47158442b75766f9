import type { NewReading } from './reading.js';

/**
 * A source of readings. `read` returns the readings of one tick; an empty array means
 * "nothing to report this time" (for example a device that is absent), never a stream of nulls.
 */
export interface Sensor {
  readonly name: string;
  readonly type: string;
  read(): NewReading[] | Promise<NewReading[]>;
}

/** Lets a sensor warn once about a missing device instead of once per tick. */
export interface SensorContext {
  warn(obj: Record<string, unknown>, msg: string): void;
}
