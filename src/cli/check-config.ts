import { configPath, loadConfig } from '../config/load.js';
import { resolveSecrets } from '../config/secrets.js';
import { EXIT } from '../exit-codes.js';
import { configOption, type Command } from './command.js';
import { configStep } from './context.js';

export const checkConfigCommand: Command = {
  name: 'check-config',
  usage: 'edge-sensor check-config [--config PATH] [--print]',
  options: { ...configOption, print: { type: 'boolean' } },
  async run(values) {
    const file = configPath(values.config as string | undefined);
    const { cfg, warnings } = configStep(() => {
      const cfg = loadConfig(file);
      // the files exist and hold usable keys and certificates; nothing read from them is printed
      return { cfg, warnings: resolveSecrets(cfg, file).warnings };
    }, false);
    for (const w of warnings) process.stderr.write(`warning: ${w.msg} ${JSON.stringify(w.fields)}\n`);
    if (values.print) process.stdout.write(JSON.stringify(cfg, null, 2) + '\n');
    process.stdout.write(`${file}: ok (${cfg.sensors.length} sensors, device ${cfg.device.id}, database ${cfg.database.path})\n`);
    return EXIT.OK;
  },
};
