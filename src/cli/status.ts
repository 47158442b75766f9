import { EXIT } from '../exit-codes.js';
import { buildStatus, formatStatus, type LiveStatus } from './snapshot.js';
import { configOption, type Command } from './command.js';
import { askDaemon, cliConfig, cliStore, pingDaemon, printJson } from './context.js';

export const statusCommand: Command = {
  name: 'status',
  usage: 'edge-sensor status [--config PATH] [--json]',
  options: { ...configOption, json: { type: 'boolean' } },
  async run(values) {
    const config = cliConfig(values.config);
    // the database is read directly (WAL lets a reader sit beside the writing daemon)
    const store = cliStore(config, 'read');
    try {
      let live: LiveStatus | undefined;
      if (await pingDaemon(config)) live = (await askDaemon(config, 'status', {}, 3000)) as LiveStatus;
      const snap = buildStatus(store, live);
      if (values.json) printJson(snap);
      else process.stdout.write(formatStatus(snap) + '\n');
      return EXIT.OK;
    } finally {
      store.close();
    }
  },
};
