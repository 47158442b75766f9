import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; name: string };

export const VERSION: string = pkg.version;

/**
 * A reading taken while the wall clock shows a time before this is flagged (`clock: "unsynced"`):
 * a Pi without a real-time clock boots with a time from the past until NTP sets it.
 * It is the time this copy was built, written by the build script; the fallback is this release's date.
 */
export const CLOCK_FLOOR_MS: number = (() => {
  try {
    const info = JSON.parse(readFileSync(new URL('./build-info.json', import.meta.url), 'utf8')) as { builtAt: string };
    const t = Date.parse(info.builtAt);
    if (Number.isFinite(t)) return t;
  } catch {
    /* not built by the build script */
  }
  return Date.parse('2026-11-01T00:00:00Z');
})();
