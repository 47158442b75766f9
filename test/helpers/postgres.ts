import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { freePort, portOpen } from './mosquitto.js';
import { waitFor } from './process.js';

/** The machine's PostgreSQL (trust authentication, database `test`); PG_TEST_URL overrides it. */
export const PG_URL = process.env.PG_TEST_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Where Debian keeps the server's programs (initdb, pg_ctl): `pg_config --bindir`, or the newest under /usr/lib/postgresql. */
export function pgBinDir(): string {
  const r = spawnSync('pg_config', ['--bindir'], { encoding: 'utf8' });
  if (r.status === 0 && existsSync(join(r.stdout.trim(), 'initdb'))) return r.stdout.trim();
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql').sort((a, b) => Number(a) - Number(b)) : [];
  return join('/usr/lib/postgresql', versions.at(-1) ?? '15', 'bin');
}

export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(url: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000 });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** A schema of its own on the machine's database, dropped by cleanup(). */
export async function testSchema(prefix = 't'): Promise<{ url: string; schema: string; q: <T extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]) => Promise<T[]>; cleanup: () => Promise<void> }> {
  const schema = `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  return {
    url: PG_URL,
    schema,
    // unqualified table names in tests mean this schema
    q: (text, values) => withPath(PG_URL, schema, text, values),
    cleanup: async () => {
      await sql(PG_URL, `DROP SCHEMA IF EXISTS ${schema} CASCADE`);
    },
  };
}

async function withPath<T extends pg.QueryResultRow>(url: string, schema: string, text: string, values: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5000, options: `-c search_path=${schema}` });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/**
 * A PostgreSQL cluster of its own (initdb in a temp folder, pg_ctl on a free port), for tests
 * that stop or restart the database: the machine's cluster is never touched. Runs as user postgres.
 */
export class PrivatePg {
  readonly dir: string;
  port = 0;

  private constructor() {
    this.dir = mkdtempSync(join(tmpdir(), 'es-pg-'));
    chmodSync(this.dir, 0o755);
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(this.dir, uid, gid);
  }

  static async start(): Promise<PrivatePg> {
    const p = new PrivatePg();
    p.port = await freePort();
    p.asPostgres('initdb', ['-D', join(p.dir, 'data'), '-A', 'trust', '-U', 'postgres', '--no-sync']);
    await p.begin();
    return p;
  }

  get url(): string {
    return `postgres://postgres@127.0.0.1:${this.port}/postgres`;
  }

  private asPostgres(cmd: string, args: string[]): void {
    const r = spawnSync('runuser', ['-u', 'postgres', '--', join(pgBinDir(), cmd), ...args], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
  }

  /** Starts the server (again); fsync off: these tests stop it, they do not pull its power. */
  async begin(): Promise<void> {
    const opts = `-p ${this.port} -k ${this.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=30`;
    this.asPostgres('pg_ctl', ['-D', join(this.dir, 'data'), '-o', opts, '-l', join(this.dir, 'log'), '-w', '-t', '60', 'start']);
    await waitFor(() => portOpen(this.port), 20_000, `private PostgreSQL on ${this.port}`);
  }

  /** 'fast' disconnects clients and shuts down cleanly; 'immediate' is a crash (recovery at the next start). */
  stop(mode: 'fast' | 'immediate' = 'fast'): void {
    this.asPostgres('pg_ctl', ['-D', join(this.dir, 'data'), '-m', mode, '-w', '-t', '60', 'stop']);
  }

  async destroy(): Promise<void> {
    try {
      this.stop('immediate');
    } catch {
      /* not running */
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
