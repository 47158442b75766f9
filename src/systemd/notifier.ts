import { spawn as nodeSpawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from '../util/logger.js';

/** What the daemon tells its service manager; every method is fire-and-forget and never throws. */
export interface Notifier {
  /** true when a service manager listens (NOTIFY_SOCKET is set) */
  readonly enabled: boolean;
  ready(status: string): void;
  status(status: string): void;
  /** STOPPING=1; expectMs extends systemd's stop timeout when the drain may take longer than it allows. */
  stopping(status: string, expectMs?: number): void;
  /**
   * Pings the watchdog at half of WATCHDOG_USEC from the event loop (a blocked loop misses its
   * pings and systemd restarts the daemon) and refreshes STATUS= with `describe()` on the same tick.
   */
  startHeartbeat(describe: () => string | undefined): void;
  close(): void;
}

export type SpawnFn = (command: string, args: string[], options: SpawnOptions) => ChildProcess;

export interface SystemdNotifierOptions {
  env?: NodeJS.ProcessEnv;
  /** the sender; systemd-notify ships with systemd, so it is present wherever NOTIFY_SOCKET is set */
  command?: string;
  spawn?: SpawnFn;
  /** STATUS= refresh period when it is shorter than half the watchdog interval */
  statusIntervalMs?: number;
}

/** The assignments of one pending message, in order (READY, STATUS, ...), later values winning. */
type Fields = Map<string, string>;

/** systemd-notify gives up on its barrier after 5 s; one that outlives this is stuck and killed. */
const SENDER_TIMEOUT_MS = 10_000;

/**
 * sd_notify(3) through the `systemd-notify` binary: Node has no unix datagram sockets, and a native
 * module would need libsystemd-dev and a compiler on every Pi (the unit needs `NotifyAccess=all`).
 * Each message costs a process, so at most one runs at a time; messages sent meanwhile are merged
 * into the next (the latest STATUS= wins). Without NOTIFY_SOCKET nothing is ever spawned.
 */
export class SystemdNotifier implements Notifier {
  readonly enabled: boolean;
  /** half of WATCHDOG_USEC, in ms, or undefined when the watchdog is off for this process */
  readonly watchdogPingMs?: number;
  private readonly socket?: string;
  private readonly command: string;
  private readonly spawnFn: SpawnFn;
  private readonly statusIntervalMs: number;
  private inFlight = false;
  private queued?: Fields;
  private timer?: NodeJS.Timeout;
  private lastStatus?: string;
  private isStopping = false;
  private warned = new Set<string>();
  /** messages handed to systemd-notify (for tests and the debug log) */
  sent = 0;

  constructor(
    private readonly log: Logger,
    opts: SystemdNotifierOptions = {},
  ) {
    const env = opts.env ?? process.env;
    this.socket = env.NOTIFY_SOCKET || undefined;
    this.enabled = this.socket !== undefined;
    this.command = opts.command ?? (this.enabled ? findOnPath('systemd-notify', env.PATH) : 'systemd-notify');
    this.spawnFn = opts.spawn ?? nodeSpawn;
    this.statusIntervalMs = opts.statusIntervalMs ?? 15_000;
    this.watchdogPingMs = this.enabled ? watchdogPingMs(env) : undefined;
  }

  ready(status: string): void {
    this.send([['READY', '1'], ...this.statusField(status)]);
  }

  status(status: string): void {
    this.send(this.statusField(status));
  }

  stopping(status: string, expectMs?: number): void {
    this.isStopping = true;
    const extend: Array<[string, string]> = expectMs ? [['EXTEND_TIMEOUT_USEC', String(Math.ceil(expectMs) * 1000)]] : [];
    this.send([['STOPPING', '1'], ...this.statusField(status), ...extend]);
  }

  startHeartbeat(describe: () => string | undefined): void {
    if (!this.enabled || this.timer) return;
    const ping = this.watchdogPingMs;
    const period = ping === undefined ? this.statusIntervalMs : Math.min(ping, this.statusIntervalMs);
    // a ping and the status refresh share one message, so a tick costs at most one process
    this.timer = setInterval(() => {
      let text: string | undefined;
      try {
        // while stopping the daemon's state is being torn down: keep the stop status, ping only
        if (!this.isStopping) text = describe();
      } catch (err) {
        this.warnOnce('describe', { err }, 'cannot describe status for systemd');
      }
      const fields: Array<[string, string]> = ping === undefined ? [] : [['WATCHDOG', '1']];
      if (text !== undefined) fields.push(...this.statusField(text));
      this.send(fields);
    }, period);
    // the daemon's own handles decide when the process ends, not this timer
    this.timer.unref();
  }

  /** Stops the heartbeat; a message already queued (STOPPING=1) is still delivered. */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** [['STATUS', text]] when text differs from the last status sent, else []. */
  private statusField(text: string): Array<[string, string]> {
    // one line: a newline would start a new assignment in the datagram
    const line = text.replace(/[\r\n]+/g, ' ').slice(0, 200);
    if (line === this.lastStatus) return [];
    this.lastStatus = line;
    return [['STATUS', line]];
  }

  private send(fields: Array<[string, string]>): void {
    if (!this.enabled || fields.length === 0) return;
    this.queued ??= new Map();
    for (const [k, v] of fields) this.queued.set(k, v);
    if (!this.inFlight) this.flush();
  }

  private flush(): void {
    const fields = this.queued;
    this.queued = undefined;
    if (!fields || fields.size === 0) return;
    const args = [...fields].map(([k, v]) => `${k}=${v}`);
    this.inFlight = true;
    let child: ChildProcess;
    try {
      child = this.spawnFn(this.command, args, {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { NOTIFY_SOCKET: this.socket, PATH: process.env.PATH ?? '/usr/bin:/bin' },
      });
    } catch (err) {
      this.done(args, err as Error);
      return;
    }
    this.sent++;
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 500) stderr += d.toString();
    });
    const killer = setTimeout(() => child.kill('SIGKILL'), SENDER_TIMEOUT_MS);
    killer.unref();
    let settled = false;
    const settle = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(killer);
      this.done(args, err);
    };
    child.once('error', (err) => settle(err));
    child.once('close', (code, signal) => settle(code === 0 ? undefined : new Error(`${this.command} exited ${code ?? signal}: ${stderr.trim()}`)));
  }

  private done(args: string[], err?: Error): void {
    this.inFlight = false;
    if (err) {
      // systemd restarts a daemon whose READY or pings never arrive; say why once per kind of failure
      const code = (err as NodeJS.ErrnoException).code;
      this.warnOnce(code ?? err.message.slice(0, 60), { err: err.message, command: this.command, fields: args.map((a) => a.split('=')[0]) }, 'cannot notify systemd');
    } else {
      this.log.debug({ fields: args.map((a) => a.split('=')[0]) }, 'notified systemd');
    }
    if (this.queued) this.flush();
  }

  private warnOnce(key: string, obj: object, msg: string): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.log.warn(obj, msg);
  }
}

/** Half the watchdog interval in ms, as sd_watchdog_enabled(3) defines whether it applies to this process. */
export function watchdogPingMs(env: NodeJS.ProcessEnv, pid = process.pid): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!Number.isInteger(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** The absolute path of a command, so that each message costs one exec, not one per PATH entry. */
function findOnPath(command: string, path = '/usr/bin:/bin'): string {
  for (const dir of path.split(':')) {
    if (!dir) continue;
    try {
      accessSync(join(dir, command), constants.X_OK);
      return join(dir, command);
    } catch {
      /* not in this one */
    }
  }
  return command;
}
