import { afterAll, describe, expect, it } from 'vitest';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { makeTmp } from './helpers/tmp.js';
import { daemonConfig, sqlValue } from './helpers/daemon-config.js';
import { TIME_SCALE, runCli, sleep, spawnCli, waitFor } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

function config(name: string, extra: Record<string, unknown> = {}) {
  return daemonConfig(tmp.dir, name, {
    mqtt: { url: 'mqtt://127.0.0.1:1' }, // nothing listens: sampling must not care
    sensors: [
      { type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 50 },
      { type: 'memory', name: 'mem', schedule: '* * * * * *' },
    ],
    ...extra,
  });
}

const count = (db: string, where = '1=1') => sqlValue(db, `SELECT count(*) FROM transactions WHERE ${where}`);

describe('daemon as a child process', () => {
  it('samples into SQLite and exits 0 on SIGTERM', async () => {
    const c = config('term');
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => d.logLines().some((l) => l.msg === 'sampling started'), 10_000, 'sampling started');
    await waitFor(() => count(c.db) >= 100 && count(c.db, "sensor = 'mem'") >= 2, 15_000, 'two ticks of both sensors');
    d.child.kill('SIGTERM');
    const { code } = await d.exited;
    expect(code).toBe(0);
    const n = count(c.db);
    expect(n).toBeGreaterThanOrEqual(100);
    expect(count(c.db, "sensor = 'mem'")).toBeGreaterThanOrEqual(2);
    const lines = d.logLines();
    expect(lines.some((l) => l.msg === 'stopped' && l.written === n)).toBe(true);
    // every line is JSON with a level and a time: journald and pino-pretty can read it
    expect(lines.length).toBeGreaterThan(2);
    expect(lines.every((l) => typeof l.level === 'number' && typeof l.time === 'number')).toBe(true);
  });

  it('loses no committed reading to kill -9, and the database stays intact', async () => {
    const c = config('kill', {
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 2000 }],
    });
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => d.logLines().some((l) => l.msg === 'sampling started'), 10_000, 'sampling started');
    // an independent reader records every id it sees committed, until the kill
    const seen = new Set<string>();
    await waitFor(() => count(c.db) > 0, 5000, 'first rows');
    const reader = new Database(c.db, { readonly: true });
    const stmt = reader.prepare('SELECT id FROM transactions WHERE seq > ? ORDER BY seq');
    let last = 0;
    // the kill comes at a random moment of the writing: after 4,000 to 6,000 readings seen committed
    const killAfter = 4000 + Math.floor(Math.random() * 2000);
    const giveUpAt = Date.now() + 30_000 * TIME_SCALE;
    while (seen.size < killAfter && Date.now() < giveUpAt) {
      for (const id of stmt.pluck().all(last) as string[]) seen.add(id);
      last = reader.prepare('SELECT coalesce(max(seq), 0) FROM transactions').pluck().get() as number;
      await sleep(20);
    }
    d.child.kill('SIGKILL');
    await d.exited;
    for (const id of stmt.pluck().all(last) as string[]) seen.add(id);
    reader.close();
    expect(seen.size).toBeGreaterThanOrEqual(4000);

    // restart: everything committed before the kill is still there; writing goes on
    const d2 = spawnCli(['run', '--config', c.path]);
    await waitFor(() => count(c.db) > seen.size + 2000, 15_000, 'writing again after the restart');
    d2.child.kill('SIGTERM');
    expect((await d2.exited).code).toBe(0);
    const db = new Database(c.db, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const present = db.prepare('SELECT count(*) FROM transactions WHERE id = ?').pluck();
    let missing = 0;
    for (const id of seen) if (present.get(id) !== 1) missing++;
    expect(missing).toBe(0);
    // seq continued after the restart without reuse
    const seqs = db.prepare('SELECT seq FROM transactions ORDER BY seq').pluck().all() as number[];
    expect(seqs.length).toBeGreaterThan(seen.size);
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seqs[seqs.length - 1]).toBe(seqs.length);
    db.close();
  });

  it('a database path in an unwritable place gives one clear error and a non-zero exit', async () => {
    const blocker = join(tmp.dir, 'blocker');
    writeFileSync(blocker, 'a file where a folder should be');
    const c = config('badpath', { database: { path: join(blocker, 'edge.db') } });
    const r = await runCli(['run', '--config', c.path]);
    expect(r.code).toBe(73);
    const fatal = r.stdout.split('\n').filter((l) => l.includes('"level":60'));
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatch(/cannot (open|create) database/);
  });

  it('a database folder on a file system that refuses folders (/proc) fails at once instead of hanging', async () => {
    // Node's recursive mkdirSync spins forever there; the daemon must exit with one clear error
    const c = config('procpath', { database: { path: `/proc/edge-sensor-test-${process.pid}/edge.db` } });
    const started = Date.now();
    const r = await runCli(['run', '--config', c.path], {}, undefined, 15_000);
    expect(r.signal, 'the daemon had to be killed: it hung').toBeNull();
    expect(r.code).toBe(73);
    const fatal = r.stdout.split('\n').filter((l) => l.includes('"level":60'));
    expect(fatal).toHaveLength(1);
    expect(fatal[0]).toMatch(/cannot create database .*mkdir/);
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('a database path that names a folder gets an error saying so', async () => {
    const dir = join(tmp.dir, 'data');
    mkdirSync(dir);
    const c = config('dirpath', { database: { path: dir } });
    const r = await runCli(['run', '--config', c.path]);
    expect(r.code).toBe(73);
    const fatal = r.stdout.split('\n').filter((l) => l.includes('"level":60'));
    expect(fatal).toHaveLength(1);
    expect(JSON.parse(fatal[0]).msg).toMatch(/cannot open database .*data: it is a folder/);
  });

  it('missing folders above the database are made, closed to other users', async () => {
    const path = join(tmp.dir, 'deep', 'er', 'edge.db');
    const c = config('deep', { database: { path }, sensors: [] });
    const d = spawnCli(['run', '--config', c.path]);
    await waitFor(() => d.stdout().includes('sampling started'), 15_000, 'daemon start');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const { statSync } = await import('node:fs');
    // 0750 (less under a stricter umask): nothing for other users
    for (const dir of [join(tmp.dir, 'deep'), join(tmp.dir, 'deep', 'er')]) {
      expect(statSync(dir).isDirectory()).toBe(true);
      expect(statSync(dir).mode & 0o027).toBe(0);
    }
    expect(statSync(path).mode & 0o077).toBe(0);
  });

  it('a file that is not a database is refused, not overwritten', async () => {
    const notDb = join(tmp.dir, 'notes.txt');
    writeFileSync(notDb, 'my shopping list\n');
    const c = config('notdb', { database: { path: notDb } });
    const r = await runCli(['run', '--config', c.path]);
    expect(r.code).toBe(65);
    expect(r.stdout).toMatch(/not an SQLite database/);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(notDb, 'utf8')).toBe('my shopping list\n');
  });
});
