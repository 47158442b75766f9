#!/usr/bin/env -S node --lite-mode --no-expose-wasm
// --lite-mode (V8 without its optimizing compiler): on a Pi memory is scarcer than CPU; the trade is
// measured in docs/benchmarks.md ("Memory"). --no-expose-wasm only silences V8's warning that lite
// mode has no WebAssembly. `npm start` and the systemd unit pass the same flags.
import { EXIT } from '../exit-codes.js';
import { VERSION } from '../version.js';
import { CliError, parse, type Command } from './command.js';

// Each command's module (and what it pulls in: zod, yaml, mqtt.js...) is loaded only when that
// command runs: a CLI call on a Pi should not pay for the daemon's imports.
const commands: Array<{ name: string; summary: string; load: () => Promise<Command> }> = [
  { name: 'run', summary: 'run the daemon: sample into SQLite, sync over MQTT (stop with SIGTERM or Ctrl-C)', load: async () => (await import('./run.js')).runCommand },
  { name: 'check-config', summary: 'validate a config file and exit 0 (valid) or 78 (invalid, every problem listed)', load: async () => (await import('./check-config.js')).checkConfigCommand },
  { name: 'status', summary: 'pending, synced and parked counts, last sync and error, and whether the daemon runs and is online', load: async () => (await import('./status.js')).statusCommand },
  { name: 'log', summary: 'the newest sync_log events, newest last; --follow keeps printing new ones', load: async () => (await import('./log.js')).logCommand },
  { name: 'record', summary: 'record a transaction by hand; it is stored at once and synced like any reading', load: async () => (await import('./record.js')).recordCommand },
  { name: 'offline', summary: 'stop syncing and disconnect from the broker; sampling goes on; the choice survives a restart', load: async () => (await import('./mode.js')).offlineCommand },
  { name: 'online', summary: 'resume syncing (the running daemon reconnects and syncs at once); the choice survives a restart', load: async () => (await import('./mode.js')).onlineCommand },
  { name: 'sync', summary: 'ask the running daemon for a sync cycle now, skipping any backoff wait, and report what happened', load: async () => (await import('./sync.js')).syncCommand },
  { name: 'requeue', summary: 'put parked rows (refused by the broker too often) back to pending', load: async () => (await import('./requeue.js')).requeueCommand },
  { name: 'watch', summary: 'subscribe to a broker and show every device live: status, batches, delays, duplicates and seq gaps', load: async () => (await import('./watch.js')).watchCommand },
  { name: 'collect', summary: 'run the collector: the fleet\'s readings from the broker into PostgreSQL, each once, every gap explained', load: async () => (await import('./collect.js')).collectCommand },
  { name: 'fleet', summary: 'every device the collector knows: state, last seen, readings stored, lag, backlog, gaps (--gaps DEVICE lists them)', load: async () => (await import('./fleet.js')).fleetCommand },
  { name: 'demo', summary: 'the interactive menu of the original demo, with its own database and an embedded MQTT broker', load: async () => (await import('./demo.js')).demoCommand },
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
  const entry = commands.find((c) => c.name === name);
  if (!entry) {
    process.stderr.write(`unknown command '${name}'\n\n${help()}\n`);
    return EXIT.USAGE;
  }
  const cmd = await entry.load();
  const { values, positionals } = parse(cmd, rest);
  if (values.help) {
    process.stdout.write(`${entry.summary}\n\nusage: ${cmd.usage}\n`);
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
      process.stderr.write(`${err.prefixed ? 'edge-sensor: ' : ''}${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      process.stderr.write(`edge-sensor: ${(err as Error)?.stack ?? String(err)}\n`);
      process.exitCode = EXIT.FAILURE;
    }
    setTimeout(() => process.exit(process.exitCode), 2000).unref();
  },
);
