import { readdirSync, readFileSync } from 'node:fs';
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

export function listDir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

export { join };
