import { pino, type Logger, type LevelWithSilent, type DestinationStream } from 'pino';

export type { Logger };

/**
 * One root logger per process, JSON lines to stdout (journald takes them as they are).
 * Modules get children: `log.child({ module: 'sync' })`. The level comes validated from the config
 * (where LOG_LEVEL from the environment has already overridden it).
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level: level as LevelWithSilent,
      base: { pid: process.pid },
      // never let a secret reach a log line, even if an object carrying one is logged
      redact: { paths: ['password', '*.password', 'mqtt.password', 'options.password'], censor: '[redacted]' },
    },
    // synchronous stdout (pino's default): a crash or kill loses no log line; volume at info is small
    destination ?? pino.destination({ fd: 1, sync: true }),
  );
}

/** A logger that writes nothing: for CLI commands and tests that do not care. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
