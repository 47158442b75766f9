import { configPath, loadConfig, readConfigFile, ConfigError } from '../config/load.js';
import { resolveSecrets } from '../config/secrets.js';
import { isCollectorConfig, loadCollectorConfig, resolveCollectorSecrets } from '../collector/config.js';
import { EXIT } from '../exit-codes.js';
import { configOption, type Command } from './command.js';

export const checkConfigCommand: Command = {
  name: 'check-config',
  usage: 'edge-sensor check-config [--config PATH] [--collector] [--print]   (a file with a top-level postgres: key is a collector\'s config)',
  options: { ...configOption, print: { type: 'boolean' }, collector: { type: 'boolean' } },
  async run(values) {
    const file = configPath(values.config as string | undefined);
    try {
      if (values.collector || isCollectorConfig(readConfigFile(file))) {
        const cfg = loadCollectorConfig(file);
        for (const w of resolveCollectorSecrets(cfg, file).warnings) process.stderr.write(`warning: ${w.msg} ${JSON.stringify(w.fields)}\n`);
        if (values.print) process.stdout.write(JSON.stringify(cfg, null, 2) + '\n');
        process.stdout.write(`${file}: ok (collector ${cfg.mqtt.clientId}, topics ${cfg.mqtt.topicPrefix}/+/…, PostgreSQL schema ${cfg.postgres.schema})\n`);
        return EXIT.OK;
      }
      const cfg = loadConfig(file);
      // the files exist and hold usable keys and certificates; nothing read from them is printed
      for (const w of resolveSecrets(cfg, file).warnings) process.stderr.write(`warning: ${w.msg} ${JSON.stringify(w.fields)}\n`);
      if (values.print) process.stdout.write(JSON.stringify(cfg, null, 2) + '\n');
      process.stdout.write(`${file}: ok (${cfg.sensors.length} sensors, device ${cfg.device.id}, database ${cfg.database.path})\n`);
      return EXIT.OK;
    } catch (err) {
      if (err instanceof ConfigError) {
        process.stderr.write(err.message + '\n');
        return EXIT.CONFIG;
      }
      throw err;
    }
  },
};
