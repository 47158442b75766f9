import { EXIT } from '../exit-codes.js';
import { CLOCK_FLOOR_MS } from '../version.js';
import { FLAG_CLOCK_SUSPECT, manualReadingProblems, parseDecimal } from '../sensors/reading.js';
import { configOption, CliError, type Command } from './command.js';
import { cliConfig, cliStore, printJson } from './context.js';
import { DaemonNotRunningError, sendControl } from '../control/client.js';
import { socketPathOf } from '../control/protocol.js';

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
    const amount = values.amount === undefined ? undefined : parseDecimal(String(values.amount));
    const reading = {
      sensor: (values.sensor as string | undefined) ?? 'manual',
      value: amount ?? values.amount ?? 'nothing',
      unit: (values.unit as string | undefined) ?? null,
      description: (values.description as string | undefined) ?? null,
    };
    const problems = manualReadingProblems(reading);
    if (problems.length > 0) throw new CliError(problems.map((p) => `--${p.field} ${p.message}`).join('\n'), EXIT.USAGE);
    const sensor = reading.sensor;
    const config = cliConfig(values.config);
    // a second writer beside the daemon is safe: seq is taken inside the write transaction
    const store = cliStore(config, 'record');
    try {
      const now = Date.now();
      const r = store.append(
        [{ sensor, value: amount!, unit: reading.unit, description: reading.description }],
        now,
        now < CLOCK_FLOOR_MS ? FLAG_CLOCK_SUSPECT : 0,
      );
      const row = store.reading(r.firstSeq);
      // a running daemon looks for pending rows when its own writes nudge it: tell it about this one
      await sendControl(socketPathOf(config), 'nudge', {}, 2000).catch((err: Error) => {
        if (!(err instanceof DaemonNotRunningError)) process.stderr.write(`note: the running daemon was not told (${err.message}); it sends the reading at its next look, within 30 s\n`);
      });
      if (values.json) printJson(row);
      else process.stdout.write(`recorded seq ${r.firstSeq} (${row?.id}): ${amount}${values.description ? ` "${values.description}"` : ''}; pending until the broker acknowledges it\n`);
      return EXIT.OK;
    } finally {
      store.close();
    }
  },
};
