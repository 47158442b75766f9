import { createRequire } from 'node:module';
import type * as NodeCron from 'node-cron';
import { periodicSeconds } from './periodic-clock.js';

let loaded: typeof NodeCron | undefined;

/**
 * node-cron, loaded on first use: the usual schedules ("every N seconds") run on the PeriodicClock
 * and never need it, and loading it costs a device a few MB of memory (docs/benchmarks.md, "Idle RSS").
 */
export function nodeCron(): typeof NodeCron {
  loaded ??= createRequire(import.meta.url)('node-cron') as typeof NodeCron;
  return loaded;
}

/** A schedule the sampler can run: an every-N-seconds one, or any expression node-cron accepts. */
export function validSchedule(schedule: string): boolean {
  return periodicSeconds(schedule) !== undefined || nodeCron().validate(schedule);
}
