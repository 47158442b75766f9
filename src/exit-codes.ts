import type { StoreErrorKind } from './store/database.js';

/** Exit codes, after sysexits.h where one fits, so systemd and scripts can tell failures apart. */
export const EXIT = {
  OK: 0,
  FAILURE: 1,
  USAGE: 64, // EX_USAGE: bad command line
  DATA: 65, // EX_DATAERR: the database belongs to another program or a newer edge-sensor
  NOINPUT: 66, // EX_NOINPUT: there is no database to read (status, log, … before any run)
  UNAVAILABLE: 69, // EX_UNAVAILABLE: the daemon is not running
  CANTCREAT: 73, // EX_CANTCREAT: the database cannot be opened or created
  CONFIG: 78, // EX_CONFIG: the configuration is invalid
} as const;

/** The exit code of a database that cannot be used, for the daemon and every command alike. */
export function storeExitCode(kind: StoreErrorKind): number {
  if (kind === 'missing') return EXIT.NOINPUT;
  return kind === 'foreign' || kind === 'newer-schema' ? EXIT.DATA : EXIT.CANTCREAT;
}
