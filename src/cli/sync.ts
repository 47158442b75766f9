import { EXIT } from '../exit-codes.js';
import type { SyncReport } from '../sync/sync-loop.js';
import { configOption, CliError, type Command } from './command.js';
import { askDaemon, cliConfig, printJson } from './context.js';

export const syncCommand: Command = {
  name: 'sync',
  usage: 'edge-sensor sync [--config PATH] [--timeout MS] [--json]',
  options: { ...configOption, timeout: { type: 'string', short: 't' }, json: { type: 'boolean' } },
  async run(values) {
    const timeoutMs = values.timeout === undefined ? 15_000 : Number(values.timeout);
    if (!Number.isFinite(timeoutMs) || timeoutMs < 100) throw new CliError(`--timeout expects milliseconds (>= 100), got ${String(values.timeout)}`, EXIT.USAGE);
    const config = cliConfig(values.config);
    const r = (await askDaemon(config, 'sync', { timeoutMs }, timeoutMs + 5000)) as SyncReport;
    if (values.json) printJson(r);
    else if (r.ok) process.stdout.write(`synced: ${r.ackedRows} rows acknowledged in ${r.ackedBatches} batches; ${r.pendingLeft ?? '?'} pending\n`);
    else process.stdout.write(`not synced: ${r.reason ?? 'unknown reason'} (${r.ackedRows} rows acknowledged; ${r.pendingLeft ?? '?'} pending)\n`);
    return r.ok ? EXIT.OK : EXIT.FAILURE;
  },
};
