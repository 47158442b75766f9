import { parseArgs, type ParseArgsConfig } from 'node:util';
import { EXIT } from '../exit-codes.js';

/** A subcommand of the edge-sensor executable. */
export interface Command {
  name: string;
  usage: string;
  options: NonNullable<ParseArgsConfig['options']>;
  run(values: Record<string, string | boolean | string[] | undefined>, positionals: string[]): Promise<number>;
}

/** A failure to report to the user as one clear line, with the exit code it deserves. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.FAILURE,
    /** `edge-sensor: ` in front; run and check-config print a config problem as it is */
    readonly prefixed = true,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export const configOption = { config: { type: 'string', short: 'c' } } as const;
export const helpOption = { help: { type: 'boolean', short: 'h' } } as const;

export function parse(cmd: Command, argv: string[]) {
  try {
    return parseArgs({ args: argv, options: { ...cmd.options, ...helpOption }, allowPositionals: true, strict: true });
  } catch (err) {
    throw new CliError(`${(err as Error).message}\n\nusage: ${cmd.usage}`, EXIT.USAGE);
  }
}
