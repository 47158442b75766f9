import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync, chmodSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { waitFor, sleep, track } from './process.js';
import { connect as netConnect } from 'node:net';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = netConnect(port, '127.0.0.1');
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/**
 * A private Mosquitto on a free port, configured so that the broker is not the weak link:
 * persistence saved on every change, no queue limit for offline persistent subscribers.
 */
export class Mosquitto {
  proc?: ChildProcess;
  readonly confPath: string;
  private logText = '';

  constructor(
    readonly dir: string,
    readonly port: number,
    extra: string[] = [],
  ) {
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
    this.confPath = join(dir, 'mosquitto.conf');
    writeFileSync(
      this.confPath,
      [
        `listener ${port} 127.0.0.1`,
        'allow_anonymous true',
        'persistence true',
        `persistence_location ${dir}/`,
        'autosave_on_changes true',
        'autosave_interval 1',
        'max_queued_messages 0',
        'max_inflight_messages 0',
        'user root',
        ...extra,
      ].join('\n') + '\n',
    );
  }

  static async start(dir: string, extra: string[] = []): Promise<Mosquitto> {
    const m = new Mosquitto(dir, await freePort(), extra);
    await m.start();
    return m;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const p = track(spawn('mosquitto', ['-c', this.confPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.proc = p;
    p.stdout!.on('data', (d) => (this.logText += d));
    p.stderr!.on('data', (d) => (this.logText += d));
    await waitFor(() => portOpen(this.port), 10_000, `mosquitto on ${this.port}: ${this.logText}`);
  }

  /** kill -9: no clean shutdown, no final persistence save */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    this.proc = undefined;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([exited, sleep(5000)]);
    if (p.exitCode === null) p.kill('SIGKILL');
    this.proc = undefined;
  }

  log(): string {
    return this.logText;
  }

  static readFile(path: string): string {
    return readFileSync(path, 'utf8');
  }
}

/**
 * A private Mosquitto for the tests of one file (or one describe block): started before them,
 * stopped after them. Its url and port are read once it runs.
 */
export function mosquittoForTests(dir: string, extraConf: string[] = []): { readonly url: string; readonly port: number } {
  let broker: Mosquitto | undefined;
  beforeAll(async () => {
    broker = await Mosquitto.start(dir, extraConf);
  });
  afterAll(async () => {
    await broker?.stop();
  });
  const running = () => {
    if (!broker) throw new Error('the test Mosquitto is not running');
    return broker;
  };
  return {
    get url() {
      return running().url;
    },
    get port() {
      return running().port;
    },
  };
}
