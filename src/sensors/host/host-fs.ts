import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { readFileCapped, readFileCappedAsync } from '../../util/read-capped.js';

/**
 * Where host sensors read Linux's /proc and /sys. Reading these files directly costs
 * microseconds; systeminformation spawns shells for the same values (tens of ms each,
 * much more on a Pi), so it is used only off Linux. Tests point the roots at fake trees.
 */
export interface HostRoots {
  procRoot: string;
  sysRoot: string;
}

export const isLinux = process.platform === 'linux';

/** /proc and sysfs attributes are small; a file that is longer is not the one we meant (a link to /dev/zero). */
export const SENSOR_FILE_MAX_BYTES = 256 * 1024;

export function readText(path: string): string | undefined {
  try {
    return readFileCapped(path, SENSOR_FILE_MAX_BYTES).toString('utf8');
  } catch {
    return undefined;
  }
}

/**
 * Reads a sysfs attribute off the event loop. Some attributes block in the driver while the
 * device measures (a DS18B20's w1_slave takes ~750 ms, a BME280's input ~10-40 ms): a
 * synchronous read would stall sampling and syncing for that long.
 */
export async function readTextAsync(path: string): Promise<string> {
  return (await readFileCappedAsync(path, SENSOR_FILE_MAX_BYTES)).toString('utf8');
}

export function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

export { join };
