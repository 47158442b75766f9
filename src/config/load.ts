import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { configSchema, crossFieldProblems, LOG_LEVELS, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = 'config/default.yaml';
/** sysexits.h EX_CONFIG: the configuration is wrong; restarting will not help. */
export const EXIT_CONFIG = 78;

export interface ConfigProblem {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    super(`invalid configuration ${file}:\n` + problems.map((p) => `  - ${p.path || '(top level)'}: ${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

/** Which file to read: --config, then EDGE_SENSOR_CONFIG, then config/default.yaml. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return resolve(flag || env.EDGE_SENSOR_CONFIG || DEFAULT_CONFIG_PATH);
}

function pathString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += (out ? '.' : '') + String(p);
  }
  return out;
}

/** " (got VALUE)" for the value at path in the raw input, or '' when there is none. */
function describe(input: unknown, path: readonly PropertyKey[]): string {
  let v: unknown = input;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return '';
    v = (v as Record<PropertyKey, unknown>)[p as string];
  }
  if (v === undefined) return '';
  const s = JSON.stringify(v);
  return s === undefined ? '' : ` (got ${s.length > 60 ? s.slice(0, 57) + '...' : s})`;
}

/** Flattens zod issues into one line per problem, each with its full path and the value found. */
export function formatIssues(issues: readonly z.core.$ZodIssue[], input: unknown): ConfigProblem[] {
  const out: ConfigProblem[] = [];
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        out.push({ path: pathString([...issue.path, key]), message: 'unknown key: either a typo or an option that does not exist' });
      }
    } else {
      const got = /\bgot\b/.test(issue.message) ? '' : describe(input, issue.path);
      out.push({ path: pathString(issue.path), message: issue.message + got });
    }
  }
  return out;
}

/** Validates an already-parsed object. Throws ConfigError listing every problem. */
export function parseConfig(input: unknown, file = '(inline)'): Config {
  const result = configSchema.safeParse(input ?? {});
  const cross = crossFieldProblems(input).map((p) => ({ path: pathString(p.path), message: p.message }));
  if (!result.success || cross.length > 0) {
    throw new ConfigError(file, [...(result.success ? [] : formatIssues(result.error.issues, input)), ...cross]);
  }
  return result.data;
}

/** Reads, parses and validates a YAML config file, then applies LOG_LEVEL from the environment. Throws ConfigError on any problem. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): Config {
  return withLogLevelFromEnv(parseConfig(readConfigFile(file), file), file, env);
}

/** LOG_LEVEL from the environment overrides log.level of any of our configs (daemon, collector). */
export function withLogLevelFromEnv<T extends { log: { level: string } }>(config: T, file: string, env: NodeJS.ProcessEnv = process.env): T {
  const level = env.LOG_LEVEL;
  if (level) {
    if (!(LOG_LEVELS as readonly string[]).includes(level)) {
      throw new ConfigError(file, [{ path: 'LOG_LEVEL (environment)', message: `expected one of ${LOG_LEVELS.join('|')} (got ${JSON.stringify(level)})` }]);
    }
    config.log.level = level;
  }
  return config;
}

/** Reads a YAML config file into a plain object, not validated yet. Throws ConfigError when it cannot be read or parsed. */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ConfigError(file, [{ path: '', message: code === 'ENOENT' ? 'file not found' : `cannot read file (${code ?? String(err)})` }]);
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      file,
      doc.errors.map((e) => ({ path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '', message: `YAML: ${e.message.split('\n')[0]}` })),
    );
  }
  const input = doc.toJS() ?? {};
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new ConfigError(file, [{ path: '', message: 'expected a YAML mapping at the top level' }]);
  }
  // a section left empty in YAML (`device:` followed only by comments) means "all defaults"
  for (const [k, v] of Object.entries(input)) if (v === null && k !== 'sensors') delete (input as Record<string, unknown>)[k];
  return input as Record<string, unknown>;
}
