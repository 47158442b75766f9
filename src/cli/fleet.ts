import { ConfigError } from '../config/load.js';
import { collectorConfigPath, loadCollectorConfig, resolvePgPassword } from '../collector/config.js';
import { fleetJson, fleetText, gapsJson, gapsText } from '../collector/fleet-report.js';
import { SchemaError, StoreConfigError, StoreUnavailableError } from '../collector/pg/errors.js';
import { PgStore } from '../collector/pg/store.js';
import { EXIT } from '../exit-codes.js';
import { silentLogger } from '../util/logger.js';
import { CliError, configOption, type Command } from './command.js';

export const fleetCommand: Command = {
  name: 'fleet',
  usage: 'edge-sensor fleet [--config PATH] [--json] [--gaps DEVICE]   (the collector\'s config; default: $EDGE_SENSOR_COLLECTOR_CONFIG or config/collector.yaml)',
  options: { ...configOption, json: { type: 'boolean' }, gaps: { type: 'string' } },
  async run(values) {
    const file = collectorConfigPath(values.config as string | undefined);
    let config;
    let password;
    try {
      config = loadCollectorConfig(file);
      // the database's password only: the broker's secrets may not be readable by whoever looks
      password = resolvePgPassword(config, file);
    } catch (err) {
      if (err instanceof ConfigError) throw new CliError(err.message, EXIT.CONFIG);
      throw err;
    }
    const pg = config.postgres;
    const store = new PgStore(
      { url: pg.url, password, schema: pg.schema, connectTimeoutMs: pg.connectTimeoutMs, statementTimeoutMs: pg.statementTimeoutMs, lockTimeoutMs: pg.lockTimeoutMs, reorderWindowMs: config.gaps.reorderWindowMs, applicationName: 'edge-sensor-fleet' },
      silentLogger(),
    );
    try {
      await store.open('read');
      if (typeof values.gaps === 'string') {
        const g = await store.gaps(values.gaps);
        process.stdout.write(values.json ? gapsJson(g) + '\n' : gapsText(g));
        return g.known ? EXIT.OK : EXIT.NOINPUT;
      }
      const snapshot = await store.fleet();
      process.stdout.write(values.json ? fleetJson(snapshot) + '\n' : fleetText(snapshot));
      return EXIT.OK;
    } catch (err) {
      if (err instanceof SchemaError) throw new CliError(err.message, err.problem === 'missing' || err.problem === 'older' ? EXIT.NOINPUT : EXIT.DATA);
      if (err instanceof StoreConfigError) throw new CliError(err.message, EXIT.CONFIG);
      if (err instanceof StoreUnavailableError) throw new CliError(`PostgreSQL unavailable: ${err.message}`, EXIT.UNAVAILABLE);
      throw err;
    } finally {
      await store.close();
    }
  },
};
