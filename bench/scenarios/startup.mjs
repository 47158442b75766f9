// Start-up: time from spawning the daemon to its first committed reading, with an empty
// database and with the backlog. The sensor takes a reading at start (readAtStart: true), so the
// figure is the daemon's own start-up, not the wait for the first scheduled tick.
import Database from 'better-sqlite3';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { copyDb } from '../lib/backlog.mjs';
import { daemonConfig, startDaemon } from '../lib/daemon.mjs';
import { stopChild, waitFor } from '../lib/util.mjs';

const SENSOR = [{ type: 'simulated', name: 'sim-temp', unit: '°C', schedule: '*/5 * * * * *', readAtStart: true }];

/** polls max(rowid) every 2 ms; a fresh database counts once its schema exists */
function newRowProbe(db, above) {
  let conn;
  return () => {
    try {
      if (!conn) {
        if (!existsSync(db)) return false;
        conn = new Database(db, { readonly: true, fileMustExist: true });
        conn.stmt = conn.prepare('SELECT coalesce(max(rowid), 0) FROM transactions').pluck();
      }
      return conn.stmt.get() > above;
    } catch {
      conn?.close();
      conn = undefined;
      return false;
    }
  };
}

export async function startupOnce(ctx, { backlog, n, pin }) {
  const db = join(ctx.workDir, backlog ? 'start-backlog.db' : 'start-empty.db');
  for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  if (backlog) copyDb(backlog, db);
  const device = backlog ? 'start-backlog' : 'start-empty';
  const cfg = daemonConfig(ctx.workDir, { db, url: ctx.broker.url, device, sensors: SENSOR });
  const probe = newRowProbe(db, backlog ? n : 0);
  const proc = startDaemon(cfg, { pin });
  try {
    await waitFor(probe, 60_000, 'first committed reading', 2);
    return performance.now() - proc.spawnedAt;
  } finally {
    await stopChild(proc);
    for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  }
}
