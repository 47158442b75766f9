import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ConfigError, formatIssues, readConfigFile, withLogLevelFromEnv, type ConfigProblem } from '../config/load.js';
import { crossFieldProblems, duration, int, LOG_LEVELS, mqttSchema, size } from '../config/schema.js';
import { redactUrl } from '../util/url.js';
import { readPassword, resolveSecrets, type LinkSecrets, type SecretsWarning } from '../config/secrets.js';

// The MQTT connection, credentials and TLS are the daemon's keys (one rule for both programs);
// what only a subscriber needs is added here. Every object is strict, as in the daemon's config.
const mqtt = mqttSchema
  .pick({ url: true, topicPrefix: true, protocolVersion: true, keepaliveSec: true, connectTimeoutMs: true, username: true, passwordFile: true, passwordEnv: true, password: true, tls: true })
  .extend({
    /** stable across restarts: the broker keeps the session (and what arrives meanwhile) under this id */
    clientId: z.string().min(1).max(128).default(() => `edge-sensor-collector-${hostname()}`),
    /** several collectors with one group share the fleet (MQTT 5 shared subscriptions) */
    shareGroup: z.string().regex(/^[^/#+\s]{1,64}$/, 'expected 1-64 characters without "/", "#", "+" or spaces').optional(),
    /** how long the broker keeps the session while the collector is away (MQTT 5) */
    sessionExpirySec: int(1, 0xffffffff).default(7 * 86_400),
    /** messages received and not yet acknowledged, at most (MQTT 5 Receive Maximum; our own bound under 3.1.1) */
    receiveMaximum: int(1, 65_535).default(200),
  });

const postgres = z.strictObject({
  /** a connection string; unset parts come from the usual PG* environment variables */
  url: z
    .string()
    .superRefine((u, ctx) => {
      let parsed: URL;
      try {
        parsed = new URL(u);
      } catch {
        return ctx.addIssue({ code: 'custom', message: `expected a URL like postgres://user@host:5432/database, got ${JSON.stringify(redactUrl(u))}` });
      }
      if (!/^postgres(ql)?:$/.test(parsed.protocol)) {
        ctx.addIssue({ code: 'custom', message: `expected a postgres:// URL, got ${JSON.stringify(redactUrl(u))}` });
      } else if (parsed.password !== '' || parsed.searchParams.has('password')) {
        // the config is printed by check-config --print and copied into tickets: no secret in it
        ctx.addIssue({ code: 'custom', message: 'expected no password in the URL (got one, not shown): use postgres.passwordFile or postgres.passwordEnv (or PGPASSWORD)' });
      }
    })
    .optional(),
  passwordFile: mqttSchema.shape.passwordFile,
  passwordEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected the name of an environment variable, e.g. EDGE_SENSOR_PG_PASSWORD').optional(),
  password: z.never({ error: 'a password is never read from the config file (got one, not shown): put it in a file named by postgres.passwordFile or an environment variable named by postgres.passwordEnv' }).optional(),
  /** where the tables live; created when missing */
  schema: z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/, 'expected a lower-case SQL identifier (a-z, 0-9, _; not starting with a digit)').default('public'),
  connectTimeoutMs: int(100, 600_000).default(10_000),
  /** any one statement, server side and client side; a slower one counts as the database being unavailable */
  statementTimeoutMs: int(100, 3_600_000).default(30_000),
  /** waiting for another collector's lock on a device row */
  lockTimeoutMs: int(100, 3_600_000).default(10_000),
});

// host:port, or [v6]:port; a host is required so that "listen on every interface" is never an accident
const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/;

const httpSchema = z
  .strictObject({
    listen: z
      .string()
      .regex(HOST_PORT, 'expected host:port, e.g. 127.0.0.1:8080 (0.0.0.0:8080 for every interface)')
      .refine((v) => Number(HOST_PORT.exec(v)?.[1] ?? 0) <= 65_535, 'expected a port from 0 to 65535')
      .optional()
      .describe('serve the fleet page and its JSON API on host:port (off when unset); only loopback unless a host says otherwise'),
    auth: z
      .discriminatedUnion('type', [
        z.strictObject({
          type: z.literal('basic'),
          user: z.string().min(1).max(128).regex(/^[^:]+$/, 'expected a user name without ":"').describe('HTTP basic auth user name'),
          passwordFile: z.string().min(1).describe('file holding the password (one line)'),
        }),
        z.strictObject({
          type: z.literal('bearer'),
          tokenFile: z.string().min(1).describe('file holding the token a client sends as Authorization: Bearer TOKEN'),
        }),
      ])
      .optional()
      .describe('who may read the page and the API (everyone who can connect when unset)'),
    requestTimeoutMs: int(1000, 600_000).default(30_000).describe('a request not answered within this is ended'),
    /** the page marks a device in trouble past these */
    trouble: z
      .strictObject({
        lagMs: duration('http.trouble.lagMs', 1000, 365 * 86_400_000).default(15 * 60_000).describe('newest stored reading older than this: the device is behind'),
        pending: int(0, Number.MAX_SAFE_INTEGER).default(1000).describe('more readings than this waiting on the device: backlog'),
      })
      .prefault({})
      .describe('when the fleet page marks a device as in trouble'),
  })
  .describe('the fleet page (docs/fleet-page.md)');

export const collectorConfigSchema = z.strictObject({
  mqtt: mqtt.prefault({}),
  postgres: postgres.prefault({}),
  batch: z
    .strictObject({
      /** readings per transaction at most; under load, messages that arrive during a commit share the next one */
      maxReadings: int(1, 1_000_000).default(20_000),
    })
    .prefault({}),
  limits: z
    .strictObject({
      /** a message larger than this (compressed or not) is rejected and recorded, not stored */
      maxMessageBytes: size('limits.maxMessageBytes', 1024, 1024 ** 3).default(16 * 1024 ** 2),
      /** how much of a rejected message's payload is kept in rejected_messages */
      rejectedPayloadBytes: size('limits.rejectedPayloadBytes', 1, 16 * 1024 ** 2).default(64 * 1024),
      /** messages received and not yet stored, in bytes, at most (beyond it the collector stops reading the socket) */
      maxHeldBytes: size('limits.maxHeldBytes', 1024 ** 2, 16 * 1024 ** 3).default(64 * 1024 ** 2),
    })
    .prefault({}),
  gaps: z
    .strictObject({
      /** a gap filled within this time of opening was reordering in flight, not a hole: it leaves no 'filled' record */
      reorderWindowMs: duration('gaps.reorderWindowMs', 0, 3_600_000).default(5000),
    })
    .prefault({}),
  endToEnd: z
    .strictObject({
      /** publish the retained {prefix}/{device}/stored answers (devices with sync.endToEnd act on them) */
      enabled: z.boolean().default(true).describe('publish the retained {topicPrefix}/{device}/stored answers (devices with sync.endToEnd act on them)'),
      /** one stored message per device per this at most; changes in between are coalesced */
      intervalMs: duration('endToEnd.intervalMs', 100, 3_600_000).default(2000).describe('at most one stored message per device per this; changes in between are coalesced'),
      /** a device's acknowledged readings above everything stored for this long are asked for (the broker lost the newest) */
      tailWindowMs: duration('endToEnd.tailWindowMs', 1000, 86_400_000).default(30_000).describe("readings the device's status says the broker acknowledged, above everything stored for this long, are asked for (a tail the broker lost)"),
      /** an unchanged answer that still asks for readings is published again after this */
      republishMs: duration('endToEnd.republishMs', 1000, 86_400_000).default(30_000).describe('an unchanged answer that still asks for readings is published again after this'),
      /** missing ranges per message at most, lowest first */
      maxRanges: int(1, 1000).default(100).describe('missing ranges per stored message at most, lowest first'),
      /** no PUBACK by then: told again at the next change */
      publishTimeoutMs: int(100, 600_000).default(10_000).describe('no PUBACK by then: the device is told again at the next round'),
    })
    .prefault({})
    .describe('end-to-end acknowledgements to the devices (docs/collector.md, End-to-end acknowledgements)'),
  statusHistory: z
    .strictObject({
      keepMs: duration('statusHistory.keepMs', 3_600_000, 10 * 365 * 86_400_000).default(30 * 86_400_000).describe('status samples older than this are deleted (checked hourly)'),
      everyMs: duration('statusHistory.everyMs', 0, 86_400_000).default(300_000).describe("a device's live status is sampled at most this often (a change of its online state always is); 0: every status"),
    })
    .prefault({})
    .describe("the devices' statuses over time (status_samples: the fleet page's backlog chart)"),
  http: httpSchema.prefault({}),
  log: z.strictObject({ level: z.enum(LOG_LEVELS).default('info') }).prefault({}),
});

export type CollectorConfig = z.output<typeof collectorConfigSchema>;

/** The top-level key that tells a collector's config from a daemon's (check-config uses it). */
export function isCollectorConfig(input: Record<string, unknown>): boolean {
  return 'postgres' in input;
}

function problemsAcrossFields(input: Record<string, unknown>): ConfigProblem[] {
  // the daemon's MQTT rules (TLS key pairs, one password source, 3.1.1 needs a user name)
  const out = crossFieldProblems({ mqtt: input.mqtt }).map((p) => ({ path: p.path.join('.'), message: p.message }));
  const pg = input.postgres;
  if (pg && typeof pg === 'object' && 'passwordFile' in pg && 'passwordEnv' in pg) {
    out.push({ path: 'postgres.passwordEnv', message: 'expected either postgres.passwordFile or postgres.passwordEnv, not both' });
  }
  return out;
}

/** Validates an already-parsed object. Throws ConfigError listing every problem. */
export function parseCollectorConfig(input: unknown, file = '(inline)'): CollectorConfig {
  const obj = input && typeof input === 'object' && !Array.isArray(input) ? (input as Record<string, unknown>) : {};
  const result = collectorConfigSchema.safeParse(obj);
  const cross = problemsAcrossFields(obj);
  if (!result.success || cross.length > 0) throw new ConfigError(file, [...(result.success ? [] : formatIssues(result.error.issues, obj)), ...cross]);
  return result.data;
}

/** Reads and validates a collector config file, LOG_LEVEL from the environment applied. Throws ConfigError. */
export function loadCollectorConfig(file: string, env: NodeJS.ProcessEnv = process.env): CollectorConfig {
  return withLogLevelFromEnv(parseCollectorConfig(readConfigFile(file), file), file, env);
}

export interface CollectorSecrets {
  link: LinkSecrets;
  pgPassword?: string;
  /** the fleet page's credential: a basic auth password or a bearer token */
  httpSecret?: string;
  warnings: SecretsWarning[];
}

/** The database's password alone (what `fleet` needs), read now. Throws ConfigError. */
export function resolvePgPassword(config: CollectorConfig, file: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const problems: ConfigProblem[] = [];
  const pw = readPassword('postgres', config.postgres, env, problems, []);
  if (problems.length > 0) throw new ConfigError(file, problems);
  return pw;
}

/** The broker's and the database's secrets, read now and kept out of the config object. Throws ConfigError. */
export function resolveCollectorSecrets(config: CollectorConfig, file: string, env: NodeJS.ProcessEnv = process.env): CollectorSecrets {
  const problems: ConfigProblem[] = [];
  const warnings: SecretsWarning[] = [];
  let link: LinkSecrets = {};
  try {
    const r = resolveSecrets(config, file, env);
    link = r.link;
    warnings.push(...r.warnings);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems.push(...err.problems);
  }
  const pgPassword = readPassword('postgres', config.postgres, env, problems, warnings);
  const auth = config.http.auth;
  // the same one-line secret file rules as the database's password (size cap, permissions warning)
  const before = problems.length;
  const httpSecret = auth === undefined ? undefined : readPassword('http.auth', { passwordFile: auth.type === 'basic' ? auth.passwordFile : auth.tokenFile }, env, problems, warnings);
  if (auth?.type === 'bearer') for (const p of problems.slice(before)) p.path = 'http.auth.tokenFile';
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { link, pgPassword, httpSecret, warnings };
}

export const DEFAULT_COLLECTOR_CONFIG_PATH = 'config/collector.yaml';

/** Which file to read: --config, then EDGE_SENSOR_COLLECTOR_CONFIG, then config/collector.yaml. */
export function collectorConfigPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag || env.EDGE_SENSOR_COLLECTOR_CONFIG || DEFAULT_COLLECTOR_CONFIG_PATH);
}
