import { ConfigError } from '../config/load.js';
import { collectorConfigPath, loadCollectorConfig, resolveCollectorSecrets } from '../collector/config.js';
import { Collector } from '../collector/collector.js';
import { SchemaError, StoreConfigError } from '../collector/pg/errors.js';
import { EXIT } from '../exit-codes.js';
import { SystemdNotifier } from '../systemd/notifier.js';
import { createLogger } from '../util/logger.js';
import { VERSION } from '../version.js';
import { configOption, type Command } from './command.js';

export const collectCommand: Command = {
  name: 'collect',
  usage: 'edge-sensor collect [--config PATH] [--check]   (default: $EDGE_SENSOR_COLLECTOR_CONFIG or config/collector.yaml)',
  options: { ...configOption, check: { type: 'boolean' } },
  async run(values) {
    const file = collectorConfigPath(values.config as string | undefined);
    let config;
    let secrets;
    try {
      config = loadCollectorConfig(file);
      // passwords and TLS files are read here, never put into the config object
      secrets = resolveCollectorSecrets(config, file);
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(err.message + '\n');
        return EXIT.CONFIG;
      }
      throw err;
    }
    if (values.check) {
      for (const w of secrets.warnings) process.stderr.write(`warning: ${w.msg} ${JSON.stringify(w.fields)}\n`);
      process.stdout.write(`${file}: ok (collector ${config.mqtt.clientId}${config.mqtt.shareGroup ? ` in share group ${config.mqtt.shareGroup}` : ''}, topics ${config.mqtt.topicPrefix}/+/…, schema ${config.postgres.schema}${config.http.listen ? `, fleet page on ${config.http.listen}` : ''})\n`);
      return EXIT.OK;
    }
    const log = createLogger(config.log.level);
    log.info({ version: VERSION, config: file, clientId: config.mqtt.clientId, shareGroup: config.mqtt.shareGroup, schema: config.postgres.schema, node: process.version }, 'collector starting');
    for (const w of secrets.warnings) log.warn({ module: 'config', ...w.fields }, w.msg);
    // read once, then out of the environment: programs started from here (systemd-notify) inherit it
    for (const v of [config.mqtt.passwordEnv, config.postgres.passwordEnv]) if (v !== undefined) delete process.env[v];

    const collector = new Collector(config, secrets, log);
    const notifier = new SystemdNotifier(log.child({ module: 'systemd' }));
    let stop: ((sig: NodeJS.Signals) => void) | undefined;
    let signalled: NodeJS.Signals | undefined;
    let forced: (() => void) | undefined;
    const onSignal = (sig: NodeJS.Signals) => {
      if (signalled) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        return forced?.();
      }
      signalled = sig;
      stop?.(sig);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // ready while it waits for PostgreSQL too: a database that is down at boot is an outage, not a failed start
    notifier.ready('starting: opening PostgreSQL');
    notifier.startHeartbeat(() => collector.statusLine());
    const stopped = new Promise<number>((resolve) => {
      forced = () => resolve(EXIT.FAILURE);
      stop = (sig) => {
        notifier.stopping(`stopping (${sig}): finishing the transaction in progress`, config.postgres.statementTimeoutMs + 10_000);
        collector
          .stop()
          .finally(() => notifier.close())
          .then(
            () => resolve(EXIT.OK),
            (err) => {
              log.error({ err }, 'error while stopping');
              resolve(EXIT.FAILURE);
            },
          );
      };
      if (signalled) stop(signalled);
    });
    try {
      await collector.start();
    } catch (err) {
      await collector.stop().catch(() => {});
      notifier.close();
      if (err instanceof SchemaError) {
        log.fatal({ problem: err.problem }, err.message);
        return err.problem === 'newer' || err.problem === 'foreign' ? EXIT.DATA : EXIT.FAILURE;
      }
      if (err instanceof StoreConfigError) {
        log.fatal({ err: err.message }, 'PostgreSQL refused the connection as configured');
        return EXIT.CONFIG;
      }
      log.fatal({ err }, 'start failed');
      return EXIT.FAILURE;
    }
    return stopped;
  },
};
