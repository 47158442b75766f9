import './runtime.js';
import pg from 'pg';
import { MIGRATIONS, SCHEMA_VERSION, VERSION_TABLE } from './migrations.js';
import { SchemaError } from './errors.js';

/** Table names qualified with the configured schema, quoted once (the schema name is validated config, not input). */
export function tableNames(schema: string) {
  const s = pg.escapeIdentifier(schema);
  return {
    schema: s,
    readings: `${s}.readings`,
    devices: `${s}.devices`,
    gaps: `${s}.gaps`,
    rejected: `${s}.rejected_messages`,
    statusSamples: `${s}.status_samples`,
    version: `${s}.${VERSION_TABLE}`,
  };
}

export type Tables = ReturnType<typeof tableNames>;

/**
 * Checks the tables of the schema and, in 'migrate' mode, creates or migrates them, under an
 * advisory lock so that collectors starting together do it once. A newer version, or tables of
 * the same names without our version table, are refused before anything is written.
 */
export async function openSchema(client: pg.ClientBase, schema: string, mode: 'migrate' | 'read'): Promise<{ version: number; migratedFrom: number }> {
  const t = tableNames(schema);
  await client.query('BEGIN');
  try {
    // serialises migrations of this schema across collectors (released at COMMIT or ROLLBACK)
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`edge-sensor-collector ${schema}`]);
    const found = await client.query<{ v: string | null; r: string | null }>('SELECT to_regclass($1)::text AS v, to_regclass($2)::text AS r', [t.version, t.readings]);
    let current = 0;
    if (found.rows[0].v !== null) {
      const r = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${t.version}`);
      current = r.rows[0].v ?? 0;
    } else if (found.rows[0].r !== null) {
      throw new SchemaError('foreign', `schema ${schema} has a readings table that the collector did not create (no ${VERSION_TABLE} table); refusing to touch it: use another postgres.schema`);
    }
    if (current > SCHEMA_VERSION) {
      throw new SchemaError('newer', `schema ${schema} holds the collector's tables at version ${current}, newer than this edge-sensor understands (${SCHEMA_VERSION}); upgrade edge-sensor instead`);
    }
    if (mode === 'read') {
      if (current === 0) throw new SchemaError('missing', `schema ${schema} has no collector tables yet (has edge-sensor collect run with this config?)`);
      if (current < SCHEMA_VERSION) throw new SchemaError('older', `schema ${schema} holds the collector's tables at version ${current}; run edge-sensor collect once to migrate them to ${SCHEMA_VERSION}`);
      await client.query('ROLLBACK');
      return { version: current, migratedFrom: current };
    }
    if (current < SCHEMA_VERSION) {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${t.schema}`);
      await client.query(`CREATE TABLE IF NOT EXISTS ${t.version} (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`);
      for (let v = current; v < SCHEMA_VERSION; v++) {
        await client.query(MIGRATIONS[v](t.schema));
        await client.query(`INSERT INTO ${t.version} (version) VALUES ($1)`, [v + 1]);
      }
    }
    await client.query('COMMIT');
    return { version: SCHEMA_VERSION, migratedFrom: current };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}
