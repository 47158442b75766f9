import { readdirSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

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

export function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
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
  return readFile(path, 'utf8');
}

export function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

export { join };
