import { EXIT } from '../exit-codes.js';
import { configOption, type Command } from './command.js';
import { MODE_KEY } from '../sync/online-mode.js';
import { askDaemon, cliConfig, cliStore, pingDaemon, printJson } from './context.js';

function modeCommand(online: boolean): Command {
  const name = online ? 'online' : 'offline';
  return {
    name,
    usage: `edge-sensor ${name} [--config PATH] [--json] [--stored]   (--stored: daemon not running, record the choice for its next start)`,
    options: { ...configOption, json: { type: 'boolean' }, stored: { type: 'boolean' } },
    async run(values) {
      const config = cliConfig(values.config);
      if (values.stored && !(await pingDaemon(config))) {
        const store = cliStore(config, 'change');
        store.setConfig(MODE_KEY, online ? 'online' : 'offline');
        store.logEvent(online ? 'went_online' : 'went_offline', { by: 'operator', stored: true });
        store.close();
        process.stdout.write(`daemon not running; it will start ${online ? 'online' : 'offline by choice'}\n`);
        return EXIT.OK;
      }
      const res = (await askDaemon(config, name, {}, config.sync.shutdownTimeoutMs + 5000)) as { link: string };
      if (values.json) printJson(res);
      else process.stdout.write(online ? `online: ${res.link === 'online' ? 'connected to the broker, syncing' : `reconnecting (${res.link})`}\n` : 'offline by choice: sampling goes on, nothing is sent until edge-sensor online\n');
      return EXIT.OK;
    },
  };
}

export const onlineCommand = modeCommand(true);
export const offlineCommand = modeCommand(false);
