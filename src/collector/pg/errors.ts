/**
 * The database cannot take writes now (connection refused or lost, a timeout, the server shutting
 * down, a table or a privilege missing): nothing of the transaction is acknowledged; the collector
 * waits and tries again.
 */
export class StoreUnavailableError extends Error {
  constructor(
    message: string,
    /** the SQLSTATE when the server said why */
    readonly sqlState: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

export type SchemaProblem = 'newer' | 'foreign' | 'missing' | 'older';

/** The tables in the configured schema are not ones this collector can use (decided at start). */
export class SchemaError extends Error {
  constructor(
    readonly problem: SchemaProblem,
    message: string,
  ) {
    super(message);
    this.name = 'SchemaError';
  }
}

/** Settings no retry can fix: a wrong password, a database that does not exist. */
export class StoreConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreConfigError';
  }
}

export type PgFailure = 'retry' | 'data' | 'unavailable';

/** What to do about a failed statement, from its SQLSTATE. */
export function classifyPgError(err: unknown): PgFailure {
  const code = (err as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || code.length !== 5) return 'unavailable';
  // serialization failure, deadlock, lock_timeout: the same transaction may well pass now
  if (code.startsWith('40') || code === '55P03') return 'retry';
  // data exception, integrity violation: this input, not the database
  if (code.startsWith('22') || code.startsWith('23')) return 'data';
  return 'unavailable';
}

/** Authentication failed or the database does not exist: restarting will not help. */
export function isConfigFailure(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === '28P01' || code === '28000' || code === '3D000';
}

export function pgErrorText(err: unknown): string {
  const e = err as { message?: string; code?: string };
  return e.code && /^[0-9A-Z]{5}$/.test(e.code) ? `${e.message} (SQLSTATE ${e.code})` : (e.message ?? String(err));
}
