import { EXIT } from '../exit-codes.js';
import type { SyncLogEntry } from '../store/store.js';
import { configOption, CliError, type Command } from './command.js';
import { cliConfig, cliStore } from './context.js';

function line(e: SyncLogEntry): string {
  const d = e.details && typeof e.details === 'object' ? Object.entries(e.details as Record<string, unknown>).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : String(v)}`).join(' ') : String(e.details ?? '');
  return `${e.timestamp}  ${e.event_type.padEnd(15)} ${d}`;
}

export const logCommand: Command = {
  name: 'log',
  usage: 'edge-sensor log [--config PATH] [--limit N] [--follow] [--json]',
  options: { ...configOption, limit: { type: 'string', short: 'n' }, follow: { type: 'boolean', short: 'f' }, json: { type: 'boolean' } },
  async run(values) {
    const limit = values.limit === undefined ? 20 : Number(values.limit);
    if (!Number.isInteger(limit) || limit < 1) throw new CliError(`--limit expects a positive whole number, got ${String(values.limit)}`, EXIT.USAGE);
    const config = cliConfig(values.config);
    const store = cliStore(config, 'read');
    const print = (entries: SyncLogEntry[]) => {
      for (const e of entries) process.stdout.write((values.json ? JSON.stringify(e) : line(e)) + '\n');
    };
    const first = store.recentLog(limit);
    print(first);
    if (!values.follow) {
      store.close();
      return EXIT.OK;
    }
    let last = first.at(-1)?.id ?? 0;
    return new Promise<number>((resolve) => {
      const timer = setInterval(() => {
        try {
          const more = store.recentLog(1000, last);
          if (more.length) {
            print(more);
            last = more.at(-1)!.id;
          }
        } catch (err) {
          process.stderr.write(`edge-sensor log: ${(err as Error).message}\n`);
        }
      }, 500);
      const stop = () => {
        clearInterval(timer);
        store.close();
        resolve(EXIT.OK);
      };
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
  },
};
