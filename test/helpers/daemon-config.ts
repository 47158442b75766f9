import { join } from 'node:path';
import Database from 'better-sqlite3';
import { writeConfig } from './tmp.js';

export interface DaemonFiles {
  db: string;
  path: string;
  /** ['--config', path] */
  args: string[];
}

/** Writes a config for a daemon named `name` (its device id) with its database in dir; settings override. */
export function daemonConfig(dir: string, name: string, settings: Record<string, unknown>): DaemonFiles {
  const db = join(dir, `${name}.db`);
  const path = writeConfig(dir, { device: { id: name }, database: { path: db }, log: { level: 'info' }, ...settings }, `${name}.yaml`);
  return { db, path, args: ['--config', path] };
}

/** One value from the database, read on a connection of its own (beside a running daemon). */
export function sqlValue(db: string, sql: string): number {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return d.prepare(sql).pluck().get() as number;
  } finally {
    d.close();
  }
}

/** The details of every sync_log event of one type, oldest first (read-only, beside the daemon). */
export function syncLogEvents(db: string, type: string): Array<Record<string, unknown>> {
  const d = new Database(db, { readonly: true });
  try {
    return (d.prepare('SELECT details FROM sync_log WHERE event_type = ? ORDER BY id').pluck().all(type) as string[]).map((s) => JSON.parse(s) as Record<string, unknown>);
  } finally {
    d.close();
  }
}
