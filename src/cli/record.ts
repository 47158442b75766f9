import { EXIT } from '../exit-codes.js';
import { CLOCK_FLOOR_MS } from '../version.js';
import { FLAG_CLOCK_SUSPECT } from '../store/store.js';
import { configOption, CliError, type Command } from './command.js';
import { cliConfig, cliStore, printJson } from './context.js';

export const recordCommand: Command = {
  name: 'record',
  usage: 'edge-sensor record --amount N [--description TEXT] [--sensor NAME] [--unit UNIT] [--config PATH] [--json]',
  options: {
    ...configOption,
    amount: { type: 'string', short: 'a' },
    description: { type: 'string', short: 'd' },
    sensor: { type: 'string', short: 's' },
    unit: { type: 'string', short: 'u' },
    json: { type: 'boolean' },
  },
  async run(values) {
    const amount = Number(values.amount);
    if (values.amount === undefined || String(values.amount).trim() === '' || !Number.isFinite(amount)) {
      throw new CliError(`--amount expects a number, got ${values.amount === undefined ? 'nothing' : JSON.stringify(values.amount)}`, EXIT.USAGE);
    }
    const sensor = (values.sensor as string | undefined) ?? 'manual';
    if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(sensor)) throw new CliError(`--sensor expects 1-64 characters of A-Z a-z 0-9 _ . : -, got ${JSON.stringify(sensor)}`, EXIT.USAGE);
    const config = cliConfig(values.config);
    // a second writer beside the daemon is safe: seq is taken inside the write transaction
    const store = cliStore(config, 'record');
    try {
      const now = Date.now();
      const r = store.append(
        [{ sensor, value: amount, unit: (values.unit as string | undefined) ?? null, description: (values.description as string | undefined) ?? null }],
        now,
        now < CLOCK_FLOOR_MS ? FLAG_CLOCK_SUSPECT : 0,
      );
      const row = store.db.prepare('SELECT id, seq, timestamp, sensor, amount, unit, description FROM transactions WHERE seq = ?').get(r.firstSeq);
      if (values.json) printJson(row);
      else process.stdout.write(`recorded seq ${r.firstSeq} (${(row as { id: string }).id}): ${amount}${values.description ? ` "${values.description}"` : ''}; pending until the broker acknowledges it\n`);
      return EXIT.OK;
    } finally {
      store.close();
    }
  },
};
