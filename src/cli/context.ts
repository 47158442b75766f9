import { existsSync } from 'node:fs';
import { configPath, loadConfig, ConfigError } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { resolveSecrets, type LinkSecrets } from '../config/secrets.js';
import { EXIT, storeExitCode } from '../exit-codes.js';
import { StoreOpenError } from '../store/database.js';
import { Store } from '../store/store.js';
import { socketPathOf, type ControlRequest } from '../control/protocol.js';
import { sendControl, DaemonNotRunningError, ControlCommandError } from '../control/client.js';
import { CliError } from './command.js';

/**
 * Runs a step that reads configuration (the file, LOG_LEVEL, the secrets it names): any problem
 * is exit 78 with every problem listed. `prefixed: false` prints the list as it is (run, check-config).
 */
export function configStep<T>(step: () => T, prefixed = true): T {
  try {
    return step();
  } catch (err) {
    if (err instanceof ConfigError) throw new CliError(err.message, EXIT.CONFIG, prefixed);
    throw err;
  }
}

/** Loads the config named by --config / EDGE_SENSOR_CONFIG / the default, or fails with 78 and every problem. */
export function cliConfig(flag: unknown): Config {
  return configStep(() => loadConfig(configPath(typeof flag === 'string' ? flag : undefined)));
}

/** The password and TLS files the config names, read now (never printed); problems exit 78. */
export function cliSecrets(config: Config, flag: unknown): LinkSecrets {
  return configStep(() => resolveSecrets(config, configPath(typeof flag === 'string' ? flag : undefined)).link);
}

/**
 * Opens the daemon's database for a CLI command. Read-only commands never create or migrate
 * anything; 'change' (requeue, offline/online --stored) needs the database to exist; only 'record'
 * may create it, as the daemon would on its first start (its reading then waits there for the daemon).
 */
export function cliStore(config: Config, mode: 'read' | 'change' | 'record'): Store {
  const path = config.database.path;
  const existed = mode !== 'record' || existsSync(path);
  try {
    const store = new Store(path, {
      readonly: mode === 'read',
      create: mode === 'record',
      synchronous: config.database.synchronous,
      busyTimeoutMs: config.database.busyTimeoutMs,
    });
    if (!existed) process.stderr.write(`edge-sensor: created a new database at ${path} (no daemon has used it yet; the daemon syncs it once it runs with this config)\n`);
    return store;
  } catch (err) {
    if (err instanceof StoreOpenError) throw new CliError(err.message, storeExitCode(err.kind));
    throw err;
  }
}

/** Sends a command to the running daemon; "daemon not running" becomes a clear CLI error (exit 69). */
export async function askDaemon(config: Config, cmd: ControlRequest['cmd'], args: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  try {
    return await sendControl(socketPathOf(config), cmd, args, timeoutMs);
  } catch (err) {
    if (err instanceof DaemonNotRunningError) {
      throw new CliError(`daemon not running: nothing listens on ${err.socketPath} (start it with 'edge-sensor run' or 'systemctl start edge-sensor')`, EXIT.UNAVAILABLE);
    }
    if (err instanceof ControlCommandError) throw new CliError(`the daemon refused '${cmd}': ${err.message}`);
    throw new CliError((err as Error).message);
  }
}

/** Whether a daemon answers on the socket (never throws). */
export async function pingDaemon(config: Config): Promise<{ pid: number; version: string; link: string; uptimeS: number } | undefined> {
  try {
    return (await sendControl(socketPathOf(config), 'ping', {}, 1500)) as { pid: number; version: string; link: string; uptimeS: number };
  } catch {
    return undefined;
  }
}

export function printJson(v: unknown): void {
  process.stdout.write(JSON.stringify(v, null, 2) + '\n');
}
