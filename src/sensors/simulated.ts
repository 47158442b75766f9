import type { NewReading } from './reading.js';
import type { Sensor } from './sensor.js';

export interface SimulatedOptions {
  name: string;
  unit?: string;
  count: number;
  min: number;
  max: number;
  start?: number;
  step: number;
  seed?: number;
}

/** mulberry32: tiny, fast, and reproducible for a given seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A random walk within [min, max]; the same seed gives the same sequence. */
export class SimulatedSensor implements Sensor {
  readonly type = 'simulated';
  readonly name: string;
  private readonly unit: string | null;
  private readonly rand: () => number;
  private value: number;

  constructor(private readonly opts: SimulatedOptions) {
    this.name = opts.name;
    this.unit = opts.unit ?? null;
    this.rand = mulberry32(opts.seed ?? (Math.random() * 2 ** 31) >>> 0);
    this.value = opts.start ?? (opts.min + opts.max) / 2;
  }

  next(): number {
    const { min, max, step } = this.opts;
    let v = this.value + (this.rand() * 2 - 1) * step;
    // reflect at the bounds so the walk stays inside without sticking to them
    if (v > max) v = max - (v - max);
    if (v < min) v = min + (min - v);
    this.value = Math.min(max, Math.max(min, v));
    return Math.round(this.value * 1000) / 1000;
  }

  read(): NewReading[] {
    const out: NewReading[] = new Array(this.opts.count);
    for (let i = 0; i < this.opts.count; i++) out[i] = { sensor: this.name, value: this.next(), unit: this.unit };
    return out;
  }
}
