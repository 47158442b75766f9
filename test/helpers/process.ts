import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

// Children still running when the test process ends (a failed assertion skipped their stop) are
// killed, so that no daemon or broker outlives its test and loads the machine for the next ones.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Registers a child process to be killed if it is still running when the test process exits. */
export function track(child: ChildProcess): ChildProcess {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/**
 * Multiplies the timeouts of waitFor, runCli and sleep: the arm64 run under qemu emulation is about 10x slower
 * (test/arm64/run.sh sets it), and "within 10 s" there means "within 100 s".
 */
export const TIME_SCALE = Number(process.env.EDGE_SENSOR_TEST_TIME_SCALE) || 1;

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** parsed pino lines from stdout */
  logLines: () => Array<Record<string, unknown>>;
}

/** Runs `edge-sensor ARGS` (the built CLI) as a child process. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Spawned {
  const child = track(spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: ['pipe', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  if (input !== undefined) child.stdin!.end(input);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    logLines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, unknown>;
          } catch {
            return {};
          }
        }),
  };
}

/** Runs the CLI to completion. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string, timeoutMs = 30_000) {
  const s = spawnCli(args, env, input);
  const timer = setTimeout(() => s.child.kill('SIGKILL'), timeoutMs * TIME_SCALE);
  const { code, signal } = await s.exited;
  clearTimeout(timer);
  return { code, signal, stdout: s.stdout(), stderr: s.stderr() };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits `ms` (times TIME_SCALE, like every wait here). For pacing only (a polling step, a window a
 * scenario needs): to know that something happened, or did not, wait for an event or a state.
 */
export const sleep = (ms: number) => pause(ms * TIME_SCALE);

/** Polls until fn returns a truthy value or the timeout passes (then throws with the message). */
export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, message = 'condition', stepMs = 50): Promise<T> {
  timeoutMs *= TIME_SCALE;
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${last ? `: ${String(last)}` : ''}`);
    await pause(stepMs);
  }
}
