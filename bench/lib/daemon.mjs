// The real daemon, as a child process: `node dist/cli/main.js run --config FILE`.
import { join } from 'node:path';
import { CLI, spawnNode, writeDaemonConfig } from './util.mjs';

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

/** Starts the daemon; `pin` runs it under taskset, `nodeFlags` e.g. --cpu-prof. */
export function startDaemon(configPath, opts = {}) {
  return spawnNode([CLI, 'run', '--config', configPath], opts);
}

export const readingsTopic = (device = '+') => `${TOPIC_PREFIX}/${device}/readings`;
export const dbIn = (dir, name = 'bench.db') => join(dir, name);
