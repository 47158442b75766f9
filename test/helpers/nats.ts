import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, portOpen } from './mosquitto.js';
import { sleep, track, waitFor } from './process.js';

/**
 * A private NATS server with JetStream and its MQTT listener (MQTT 3.1.1 only), on free ports.
 * NATS keeps MQTT sessions and QoS 1 messages in JetStream streams and acknowledges a QoS 1
 * publish once the message is stored: a kill -9 loses nothing it acknowledged (the stream's files
 * are written before the PUBACK; what the kernel holds survives a killed process). The fault
 * suite uses it as the broker that is not the weak link. Same shape as the Mosquitto helper.
 */
export class NatsBroker {
  proc?: ChildProcess;
  private logText = '';
  readonly confPath: string;

  private constructor(
    readonly dir: string,
    readonly port: number,
    clientPort: number,
  ) {
    mkdirSync(join(dir, 'js'), { recursive: true });
    this.confPath = join(dir, 'nats.conf');
    writeFileSync(this.confPath, `listen: 127.0.0.1:${clientPort}\nserver_name: es_faults\njetstream { store_dir: "${dir}/js" }\nmqtt { listen: 127.0.0.1:${port} }\n`);
  }

  static async start(dir: string): Promise<NatsBroker> {
    const b = new NatsBroker(dir, await freePort(), await freePort());
    await b.start();
    return b;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    const p = track(spawn('nats-server', ['-c', this.confPath], { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.proc = p;
    p.stdout!.on('data', (d) => (this.logText += d));
    p.stderr!.on('data', (d) => (this.logText += d));
    await waitFor(() => portOpen(this.port), 20_000, `nats-server MQTT on ${this.port}: ${this.logText}`);
  }

  /** kill -9: no clean shutdown */
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
}
