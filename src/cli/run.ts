import { configPath, loadConfig } from '../config/load.js';
import { resolveSecrets } from '../config/secrets.js';
import { AlreadyRunningError } from '../control/server.js';
import { Daemon } from '../daemon.js';
import { EXIT, storeExitCode } from '../exit-codes.js';
import { StoreOpenError } from '../store/database.js';
import { Supervisor } from '../supervisor.js';
import { SystemdNotifier } from '../systemd/notifier.js';
import { statusLine } from '../systemd/status-line.js';
import { createLogger, type Logger } from '../util/logger.js';
import { VERSION } from '../version.js';
import { configOption, type Command } from './command.js';
import { configStep } from './context.js';

export const runCommand: Command = {
  name: 'run',
  usage: 'edge-sensor run [--config PATH]   (default: $EDGE_SENSOR_CONFIG or config/default.yaml)',
  options: { ...configOption },
  async run(values) {
    const file = configPath(values.config as string | undefined);
    const config = configStep(() => loadConfig(file), false);
    const log = createLogger(config.log.level);
    log.info({ version: VERSION, config: file, device: config.device.id, node: process.version }, 'edge-sensor starting');
    // credentials and TLS files are read here, never put into the config object
    const secrets = configStep(() => resolveSecrets(config, file), false);
    for (const w of secrets.warnings) log.warn({ module: 'config', ...w.fields }, w.msg);
    // read once, then out of the environment: programs the daemon starts (systemd-notify) inherit it
    if (config.mqtt.passwordEnv !== undefined) delete process.env[config.mqtt.passwordEnv];

    const supervisor = new Supervisor((replaceDatabase) => new Daemon(config, log, { link: secrets.link, replaceDatabase }), log);
    supervisor.listen();
    try {
      await supervisor.start();
    } catch (err) {
      return startFailure(err, log);
    }
    // Type=notify: ready once the database is open and sampling runs; then watchdog pings and STATUS=
    const notifier = new SystemdNotifier(log.child({ module: 'systemd' }));
    notifier.ready(statusLine(supervisor.daemon));
    notifier.startHeartbeat(() => statusLine(supervisor.daemon));
    const code = await supervisor.untilStopped((signal) => notifier.stopping(`stopping (${signal}): finishing in-flight batches`, config.sync.shutdownTimeoutMs + 10_000));
    notifier.close();
    return code;
  },
};

function startFailure(err: unknown, log: Logger): number {
  if (err instanceof AlreadyRunningError) {
    log.fatal({ err }, err.message);
    return EXIT.FAILURE;
  }
  if (err instanceof StoreOpenError) {
    log.fatal({ err, path: err.path, kind: err.kind }, err.message);
    return storeExitCode(err.kind);
  }
  log.fatal({ err }, 'start failed');
  return EXIT.FAILURE;
}
