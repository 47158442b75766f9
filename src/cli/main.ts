#!/usr/bin/env node
import { EXIT } from '../exit-codes.js';
import { VERSION } from '../version.js';
import { CliError, parse, type Command } from './command.js';
import { checkConfigCommand } from './check-config.js';
import { runCommand } from './run.js';
import { statusCommand } from './status.js';
import { logCommand } from './log.js';
import { recordCommand } from './record.js';
import { onlineCommand, offlineCommand } from './mode.js';
import { syncCommand } from './sync.js';
import { requeueCommand } from './requeue.js';
import { watchCommand } from './watch.js';
import { demoCommand } from './demo.js';

const commands: Command[] = [
  runCommand,
  checkConfigCommand,
  statusCommand,
  logCommand,
  recordCommand,
  offlineCommand,
  onlineCommand,
  syncCommand,
  requeueCommand,
  watchCommand,
  demoCommand,
];

function help(): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return [
    `edge-sensor ${VERSION}: offline-first sensor daemon (SQLite store-and-forward over MQTT)`,
    '',
    'usage: edge-sensor <command> [options]',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
    '',
    "Run 'edge-sensor <command> --help' for a command's options.",
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name ? EXIT.OK : EXIT.USAGE;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(VERSION + '\n');
    return EXIT.OK;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`unknown command '${name}'\n\n${help()}\n`);
    return EXIT.USAGE;
  }
  const { values, positionals } = parse(cmd, rest);
  if (values.help) {
    process.stdout.write(`${cmd.summary}\n\nusage: ${cmd.usage}\n`);
    return EXIT.OK;
  }
  return cmd.run(values, positionals);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // the daemon's timers are all stopped by now; a command that left a handle open must not hang
    setTimeout(() => process.exit(code), 2000).unref();
  },
  (err) => {
    if (err instanceof CliError) {
      process.stderr.write(`edge-sensor: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`edge-sensor: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = EXIT.FAILURE;
    }
    setTimeout(() => process.exit(process.exitCode), 2000).unref();
  },
);
