import { resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { FileTooLargeError, readFileCapped } from '../util/read-capped.js';
import { configSchema, crossFieldProblems, LOG_LEVELS, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = 'config/default.yaml';
/** A config is a few KB; anything near this is not one (--config /dev/zero). */
export const CONFIG_MAX_BYTES = 1024 * 1024;
/** Past this many problems the rest are counted, not listed: a wrong file can hold thousands. */
const MAX_PROBLEMS_SHOWN = 50;

export interface ConfigProblem {
  path: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly problems: ConfigProblem[],
  ) {
    const shown = problems.slice(0, MAX_PROBLEMS_SHOWN).map((p) => `  - ${p.path || '(top level)'}: ${p.message}`);
    if (problems.length > MAX_PROBLEMS_SHOWN) shown.push(`  ... and ${problems.length - MAX_PROBLEMS_SHOWN} more problems`);
    super(`invalid configuration ${file}:\n` + shown.join('\n'));
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

/**
 * Reads a YAML config file (daemon's or collector's) into a plain object, not validated yet, and
 * bounded: at most CONFIG_MAX_BYTES, YAML's own limit on alias expansion (a "billion laughs" file),
 * no self-referencing aliases. Every failure is a ConfigError (exit 78), never a stack trace.
 */
export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileCapped(file, CONFIG_MAX_BYTES).toString('utf8');
  } catch (err) {
    if (err instanceof FileTooLargeError) throw new ConfigError(file, [{ path: '', message: `expected a config file of at most ${CONFIG_MAX_BYTES} bytes; this one is larger (is it really a config file?)` }]);
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
  let input: unknown;
  try {
    input = doc.toJS({ maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new ConfigError(file, [{ path: '', message: `YAML: ${(err as Error).message.split('\n')[0]}` }]);
  }
  if (!isPlainObject(input)) {
    throw new ConfigError(file, [{ path: '', message: 'expected a YAML mapping at the top level' }]);
  }
  const cycle = findCycle(input);
  if (cycle !== undefined) throw new ConfigError(file, [{ path: cycle, message: 'expected plain values: a YAML alias refers to a mapping that contains it' }]);
  // a section left empty in YAML (`device:` followed only by comments) means "all defaults"
  for (const [k, v] of Object.entries(input)) if (v === null && k !== 'sensors') delete input[k];
  return input;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** The path of the first value that contains itself (YAML `a: &x {b: *x}`), or undefined. */
function findCycle(root: unknown): string | undefined {
  const onPath = new Set<object>();
  const walk = (v: unknown, path: PropertyKey[]): string | undefined => {
    if (v === null || typeof v !== 'object') return undefined;
    if (onPath.has(v)) return pathString(path);
    onPath.add(v);
    for (const [k, child] of Object.entries(v)) {
      const found = walk(child, [...path, Array.isArray(v) ? Number(k) : k]);
      if (found !== undefined) return found;
    }
    onPath.delete(v);
    return undefined;
  };
  return walk(root, []);
}
