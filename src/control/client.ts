import { connect } from 'node:net';
import type { ControlRequest, ControlResponse } from './protocol.js';
import { sharedFolderProblem } from '../util/shared-folder.js';

/** Nothing listens on the control socket: the daemon is not running (or runs with another database). */
export class DaemonNotRunningError extends Error {
  constructor(readonly socketPath: string) {
    super(`daemon not running (nothing listens on ${socketPath})`);
    this.name = 'DaemonNotRunningError';
  }
}

/** The daemon answered with an error. */
export class ControlCommandError extends Error {}

/** Sends one command to the running daemon and returns its result. Every wait has a timeout. */
export function sendControl(socketPath: string, cmd: ControlRequest['cmd'], args: Record<string, unknown> = {}, timeoutMs = 5000): Promise<unknown> {
  // in a folder anyone can write to, whoever answers may not be the daemon
  const shared = sharedFolderProblem(socketPath);
  if (shared) return Promise.reject(new Error(`not talking to ${socketPath}: ${shared}`));
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    let settled = false;
    const done = (err: Error | undefined, value?: unknown) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => done(new Error(`the daemon did not answer '${cmd}' within ${timeoutMs} ms`)), timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ cmd, args }) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      try {
        const res = JSON.parse(buf.slice(0, nl)) as ControlResponse;
        if (res.ok) done(undefined, res.result);
        else done(new ControlCommandError(res.error ?? 'failed'));
      } catch (err) {
        done(err as Error);
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED' || err.code === 'ENOTSOCK') done(new DaemonNotRunningError(socketPath));
      else done(new Error(`cannot reach the daemon at ${socketPath}: ${err.message}`));
    });
    sock.on('close', () => done(new Error(`the daemon closed the connection without answering '${cmd}'`)));
  });
}
