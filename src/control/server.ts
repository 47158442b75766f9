import { unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../util/logger.js';
import { sharedFolderProblem } from '../util/shared-folder.js';
import { sendControl, DaemonNotRunningError } from './client.js';
import { MAX_SOCKET_PATH, parseRequest, type ControlArgs, type ControlCommand, type ControlResponse } from './protocol.js';

/** One handler per command, each given its checked arguments. */
export type ControlHandlers = { [C in ControlCommand]: (args: ControlArgs<C>) => Promise<unknown> | unknown };

/** Another daemon already serves this database: two would sync the same rows twice. */
export class AlreadyRunningError extends Error {
  constructor(
    readonly socketPath: string,
    readonly pid: unknown,
  ) {
    super(`another edge-sensor daemon (pid ${String(pid)}) is already running with this database (socket ${socketPath})`);
    this.name = 'AlreadyRunningError';
  }
}

/**
 * The operator's way into the running daemon: a unix socket next to the database, mode 0660,
 * no network port. One JSON request line, one JSON response line, then close.
 */
export class ControlServer {
  private server?: Server;
  private readonly sockets = new Set<Socket>();

  constructor(
    private readonly path: string,
    private readonly handlers: ControlHandlers,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    if (Buffer.byteLength(this.path) > MAX_SOCKET_PATH) {
      throw new Error(`control socket path is longer than ${MAX_SOCKET_PATH} bytes: ${this.path} (set control.socketPath)`);
    }
    const shared = sharedFolderProblem(this.path);
    if (shared) throw new Error(`refusing control socket ${this.path}: ${shared}`);
    // a socket file may be left by a daemon that was killed; one that answers belongs to a live daemon
    try {
      const pong = (await sendControl(this.path, 'ping', {}, 1000)) as { pid?: number };
      throw new AlreadyRunningError(this.path, pong?.pid);
    } catch (err) {
      if (!(err instanceof DaemonNotRunningError)) throw err;
    }
    try {
      unlinkSync(this.path);
    } catch {
      /* not there */
    }
    const server = createServer((sock) => this.onConnection(sock));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      // the socket is born 0660 (bind honours the umask); a chmod after listen would follow a
      // link swapped in meanwhile and change the mode of whatever it points at
      const umask = process.umask(0o117);
      try {
        server.listen(this.path, () => {
          server.off('error', reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    server.on('error', (err) => this.log.error({ err }, 'control socket error'));
    this.log.debug({ path: this.path }, 'control socket listening');
  }

  private onConnection(sock: Socket): void {
    this.sockets.add(sock);
    sock.setEncoding('utf8');
    let buf = '';
    const timer = setTimeout(() => sock.destroy(), 5000);
    sock.on('close', () => {
      clearTimeout(timer);
      this.sockets.delete(sock);
    });
    sock.on('error', () => {});
    sock.on('data', (chunk: string) => {
      buf += chunk;
      if (buf.length > 64 * 1024) return sock.destroy();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.removeAllListeners('data');
      void this.answer(buf.slice(0, nl)).then((res) => {
        let text: string;
        try {
          text = JSON.stringify(res);
        } catch (err) {
          text = JSON.stringify({ ok: false, error: `cannot encode the answer: ${(err as Error).message}` });
        }
        if (!sock.destroyed) sock.end(text + '\n');
      });
    });
  }

  /** Never throws: whatever a client sends ends in an answer, never in the daemon's end. */
  private async answer(line: string): Promise<ControlResponse> {
    const req = parseRequest(line);
    if ('error' in req) return { ok: false, error: req.error };
    try {
      const handler = this.handlers[req.cmd] as (args: unknown) => unknown;
      return { ok: true, result: await handler(req.args) };
    } catch (err) {
      this.log.warn({ cmd: req.cmd, err }, 'control command failed');
      return { ok: false, error: (err as Error)?.message ?? String(err) };
    }
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }
}
