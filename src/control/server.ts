import { chmodSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Logger } from '../util/logger.js';
import { sendControl, DaemonNotRunningError } from './client.js';
import { MAX_SOCKET_PATH, type ControlRequest, type ControlResponse } from './protocol.js';

export type ControlHandler = (args: Record<string, unknown>) => Promise<unknown> | unknown;

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
    private readonly handlers: Partial<Record<ControlRequest['cmd'], ControlHandler>>,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    if (Buffer.byteLength(this.path) > MAX_SOCKET_PATH) {
      throw new Error(`control socket path is longer than ${MAX_SOCKET_PATH} bytes: ${this.path} (set control.socketPath)`);
    }
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
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(this.path, 0o660);
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
        if (!sock.destroyed) sock.end(JSON.stringify(res) + '\n');
      });
    });
  }

  private async answer(line: string): Promise<ControlResponse> {
    let req: ControlRequest;
    try {
      req = JSON.parse(line) as ControlRequest;
    } catch {
      return { ok: false, error: 'malformed request' };
    }
    const handler = this.handlers[req.cmd];
    if (!handler) return { ok: false, error: `unknown command ${String(req.cmd)}` };
    try {
      const result = await handler(req.args ?? {});
      return { ok: true, result };
    } catch (err) {
      this.log.warn({ cmd: req.cmd, err }, 'control command failed');
      return { ok: false, error: (err as Error).message };
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
