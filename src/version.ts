import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string; name: string };

export const VERSION: string = pkg.version;

/** The date of this release: the floor when the build time is missing or earlier (a build on a Pi whose clock was not set yet). */
const RELEASE_MS = Date.parse('2026-11-01T00:00:00Z');

/**
 * A reading taken while the wall clock shows a time before this is flagged (`clock: "unsynced"`):
 * a Pi without a real-time clock boots with a time from the past until NTP sets it.
 * It is the time this copy was built (dist/build-info.json, written by `npm run build`), or the
 * release date if that is later.
 */
export const CLOCK_FLOOR_MS: number = (() => {
  try {
    const info = JSON.parse(readFileSync(new URL('./build-info.json', import.meta.url), 'utf8')) as { builtAt: string };
    const t = Date.parse(info.builtAt);
    if (Number.isFinite(t)) return Math.max(t, RELEASE_MS);
  } catch {
    /* not built by the build script */
  }
  return RELEASE_MS;
})();
