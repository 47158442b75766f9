// The real daemon, as a child process: `node dist/cli/main.js run --config FILE`.
import { readFileSync } from 'node:fs';
import { CLI, spawnNode, writeDaemonConfig } from './util.mjs';

/**
 * The node flags the installed command runs with: those of the bin's shebang
 * ("#!/usr/bin/env -S node --flag"), so the bench measures the daemon as it is deployed.
 */
export const DAEMON_NODE_FLAGS = (/^#!.*\bnode\b(.*)$/m.exec(readFileSync(CLI, 'utf8').split('\n', 1)[0])?.[1] ?? '').trim().split(/\s+/).filter(Boolean);

export const TOPIC_PREFIX = 'bench';

/** the default sensors of config/default.yaml */
export const DEFAULT_SENSORS = [
  { type: 'simulated', name: 'sim-temp', unit: '°C', schedule: '*/5 * * * * *' },
  { type: 'cpu-load', name: 'cpu-load', schedule: '*/10 * * * * *' },
];

/** n simulated sensors at 1 Hz */
export const simSensors = (n, extra = {}) =>
  Array.from({ length: n }, (_, i) => ({ type: 'simulated', name: `sim-${i}`, unit: '°C', schedule: '* * * * * *', seed: i + 1, ...extra }));

export function daemonConfig(dir, { db, url, device = 'bench', sensors = [], sync = {}, database = {}, retention, extra = {} }) {
  return writeDaemonConfig(dir, {
    device: { id: device },
    database: { path: db, synchronous: 'FULL', ...database },
    mqtt: { url, topicPrefix: TOPIC_PREFIX },
    sync: { batchSize: 500, maxInFlight: 8, ...sync },
    ...(retention ? { retention } : {}),
    sensors,
    log: { level: 'warn' },
    ...extra,
  }, `${device}.yaml`);
}

/**
 * The bin's flags, and BENCH_DAEMON_FLAGS to try others on every daemon of a run: appended
 * ("--max-semi-space-size=1"), or instead of the bin's when it starts with "!" ("!" alone: none).
 */
export function daemonNodeFlags() {
  const env = process.env.BENCH_DAEMON_FLAGS ?? '';
  const extra = env.replace(/^!/, '').split(/\s+/).filter(Boolean);
  return env.startsWith('!') ? extra : [...DAEMON_NODE_FLAGS, ...extra];
}

/** Starts the daemon; `pin` runs it under taskset, `nodeFlags` e.g. --cpu-prof. */
export function startDaemon(configPath, opts = {}) {
  return spawnNode([CLI, 'run', '--config', configPath], { ...opts, nodeFlags: [...daemonNodeFlags(), ...(opts.nodeFlags ?? [])] });
}

export const readingsTopic = (device = '+') => `${TOPIC_PREFIX}/${device}/readings`;
