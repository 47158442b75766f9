import { EXIT } from '../exit-codes.js';
import { configOption, CliError, type Command } from './command.js';
import { askDaemon, cliConfig, cliStore, pingDaemon, printJson } from './context.js';
import { printable } from '../util/printable.js';

export const requeueCommand: Command = {
  name: 'requeue',
  usage: 'edge-sensor requeue (--all | --ids ID[,ID...] | --list) [--config PATH] [--json] [--stored]   (--list: the parked rows and why; --stored: daemon not running, change the database directly)',
  options: { ...configOption, all: { type: 'boolean' }, ids: { type: 'string', multiple: true }, list: { type: 'boolean' }, json: { type: 'boolean' }, stored: { type: 'boolean' } },
  async run(values) {
    if (values.list) return listParked(values);
    const ids = ((values.ids as string[] | undefined) ?? []).flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean);
    if (!values.all && ids.length === 0) throw new CliError('say which rows: --all, or --ids ID[,ID...]', EXIT.USAGE);
    if (values.all && ids.length > 0) throw new CliError('--all and --ids exclude each other', EXIT.USAGE);
    const config = cliConfig(values.config);
    let requeued: number;
    if (values.stored && !(await pingDaemon(config))) {
      const store = cliStore(config, 'change');
      requeued = store.requeue(values.all ? undefined : ids);
      if (requeued > 0) store.logEvent('rows_requeued', { rows: requeued, stored: true });
      store.close();
    } else {
      requeued = ((await askDaemon(config, 'requeue', values.all ? {} : { ids })) as { requeued: number }).requeued;
    }
    if (values.json) printJson({ requeued });
    else process.stdout.write(`${requeued} parked rows back to pending\n`);
    return EXIT.OK;
  },
};

/** The oldest parked rows with why they were parked (read-only; the daemon may run). */
function listParked(values: Record<string, unknown>): number {
  const store = cliStore(cliConfig(values.config), 'read');
  try {
    const rows = store.parkedRows(1000);
    if (values.json) printJson(rows);
    else if (rows.length === 0) process.stdout.write('no parked rows\n');
    else for (const r of rows) process.stdout.write(`seq ${r.seq}  ${r.id}  ${r.ts}  ${printable(r.sensor)}  parked ${r.parkedAt}: ${printable(r.reason)}\n`);
    return EXIT.OK;
  } finally {
    store.close();
  }
}
