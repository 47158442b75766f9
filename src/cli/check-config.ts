import { configPath, loadConfig, readConfigFile } from '../config/load.js';
import { resolveSecrets } from '../config/secrets.js';
import { isCollectorConfig, loadCollectorConfig, resolveCollectorSecrets } from '../collector/config.js';
import { EXIT } from '../exit-codes.js';
import { configOption, type Command } from './command.js';
import { configStep } from './context.js';

export const checkConfigCommand: Command = {
  name: 'check-config',
  usage: 'edge-sensor check-config [--config PATH] [--collector] [--print]   (a file with a top-level postgres: key is a collector\'s config)',
  options: { ...configOption, print: { type: 'boolean' }, collector: { type: 'boolean' } },
  async run(values) {
    const file = configPath(values.config as string | undefined);
    // the files named exist and hold usable keys and certificates; nothing read from them is printed
    const { cfg, warnings, summary } = configStep(() => {
      if (values.collector || isCollectorConfig(readConfigFile(file))) {
        const c = loadCollectorConfig(file);
        return { cfg: c, warnings: resolveCollectorSecrets(c, file).warnings, summary: `collector ${c.mqtt.clientId}, topics ${c.mqtt.topicPrefix}/+/…, PostgreSQL schema ${c.postgres.schema}` };
      }
      const c = loadConfig(file);
      return { cfg: c, warnings: resolveSecrets(c, file).warnings, summary: `${c.sensors.length} sensors, device ${c.device.id}, database ${c.database.path}` };
    }, false);
    for (const w of warnings) process.stderr.write(`warning: ${w.msg} ${JSON.stringify(w.fields)}\n`);
    if (values.print) process.stdout.write(JSON.stringify(cfg, null, 2) + '\n');
    process.stdout.write(`${file}: ok (${summary})\n`);
    return EXIT.OK;
  },
};
