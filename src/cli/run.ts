import { configPath, loadConfig, ConfigError } from '../config/load.js';
import { resolveSecrets } from '../config/secrets.js';
import { Daemon } from '../daemon.js';
import { EXIT } from '../exit-codes.js';
import { StoreOpenError } from '../store/database.js';
import { SystemdNotifier } from '../systemd/notifier.js';
import { statusLine } from '../systemd/status-line.js';
import { createLogger } from '../util/logger.js';
import { VERSION } from '../version.js';
import { configOption, type Command } from './command.js';

export const runCommand: Command = {
  name: 'run',
  usage: 'edge-sensor run [--config PATH]   (default: $EDGE_SENSOR_CONFIG or config/default.yaml)',
  options: { ...configOption },
  async run(values) {
    const file = configPath(values.config as string | undefined);
    let config;
    try {
      config = loadConfig(file);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(err.message + '\n');
        return EXIT.CONFIG;
      }
      throw err;
    }
    const log = createLogger(config.log.level);
    log.info({ version: VERSION, config: file, device: config.device.id, node: process.version }, 'edge-sensor starting');
    // credentials and TLS files are read here, never put into the config object
    let secrets;
    try {
      secrets = resolveSecrets(config, file);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(err.message + '\n');
        return EXIT.CONFIG;
      }
      throw err;
    }
    for (const w of secrets.warnings) log.warn({ module: 'config', ...w.fields }, w.msg);
    // read once, then out of the environment: programs the daemon starts (systemd-notify) inherit it
    if (config.mqtt.passwordEnv !== undefined) delete process.env[config.mqtt.passwordEnv];

    let daemon = new Daemon(config, log, { link: secrets.link });
    const notifier = new SystemdNotifier(log.child({ module: 'systemd' }));
    // a database found damaged while running is replaced by a fresh daemon on a fresh database;
    // the process (and systemd's view of it) keeps running
    let replacing: Promise<void> | undefined;
    let stopRequested = false;
    const supervise = (d: Daemon) =>
      d.on('damaged', (reason) => {
        if (stopRequested || replacing) return;
        replacing = (async () => {
          await d.stop('database damaged');
          daemon = new Daemon(config, log, { link: secrets.link, replaceDatabase: reason });
          supervise(daemon);
          await daemon.start();
        })()
          .catch((err) => log.fatal({ err }, 'could not restart on a fresh database'))
          .finally(() => (replacing = undefined));
      });
    supervise(daemon);

    // signal handlers first: a SIGTERM that arrives while starting must still end in a clean stop
    let signals = 0;
    let signalled: NodeJS.Signals | undefined;
    let onStopRequest: ((sig: NodeJS.Signals) => void) | undefined;
    let forceExit: (() => void) | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        forceExit?.();
        return;
      }
      stopRequested = true;
      signalled = sig;
      onStopRequest?.(sig);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    try {
      await daemon.start();
    } catch (err) {
      await daemon.stop('start failed').catch(() => {});
      if ((err as Error).name === 'AlreadyRunningError') {
        log.fatal({ err }, (err as Error).message);
        return EXIT.FAILURE;
      }
      if (err instanceof StoreOpenError) {
        log.fatal({ err, path: err.path, kind: err.kind }, err.message);
        return err.kind === 'foreign' || err.kind === 'newer-schema' ? EXIT.DATA : EXIT.CANTCREAT;
      }
      log.fatal({ err }, 'start failed');
      return EXIT.FAILURE;
    }
    // Type=notify: ready once the database is open and sampling runs; then watchdog pings and STATUS=
    notifier.ready(statusLine(daemon));
    notifier.startHeartbeat(() => statusLine(daemon));
    return new Promise<number>((resolve) => {
      forceExit = () => resolve(EXIT.FAILURE);
      onStopRequest = (sig) => {
        notifier.stopping(`stopping (${sig}): finishing in-flight batches`, config.sync.shutdownTimeoutMs + 10_000);
        (async () => {
          await replacing;
          await daemon.stop(sig);
        })()
          .finally(() => notifier.close())
          .then(
            () => resolve(EXIT.OK),
            (err) => {
              log.error({ err }, 'error while stopping');
              resolve(EXIT.FAILURE);
            },
          );
      };
      if (signalled) onStopRequest(signalled);
    });
  },
};
