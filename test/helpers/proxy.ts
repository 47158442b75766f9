import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';

/**
 * A TCP proxy between the daemon and the broker that injects real network faults:
 * pause (a silent partition: bytes stop both ways, nothing is closed), cut (connection reset),
 * refuse new connections, and delay (a slow link).
 */
export class FaultProxy {
  private server?: Server;
  private readonly pairs = new Set<{ a: Socket; b: Socket }>();
  private paused = false;
  private refusing = false;
  delayMs = 0;
  /** a narrow uplink: at most this many bytes per second from client to broker (0: unlimited) */
  uplinkBytesPerSec = 0;
  connections = 0;
  /** sees every chunk that passes, numbered by connection (1, 2, ...): a packet capture */
  tap?: (connection: number, from: 'client' | 'server', data: Buffer) => void;

  constructor(
    private readonly targetPort: number,
    private readonly targetHost = '127.0.0.1',
  ) {}

  get port(): number {
    return (this.server!.address() as AddressInfo).port;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  async listen(port = 0): Promise<this> {
    this.server = createServer((a) => this.accept(a));
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', () => resolve()));
    return this;
  }

  private accept(a: Socket): void {
    if (this.refusing) {
      a.resetAndDestroy();
      return;
    }
    const n = ++this.connections;
    const b = connect(this.targetPort, this.targetHost);
    const pair = { a, b };
    this.pairs.add(pair);
    const pipe = (from: Socket, to: Socket, limited: boolean) => {
      // bytes are released in order: a narrow link queues them, and the sender feels it through
      // TCP back-pressure (the queue pauses the reading side)
      let releaseAt = 0;
      from.on('data', (d: Buffer) => {
        const send = () => {
          if (!to.destroyed) to.write(d);
        };
        if (this.paused) {
          // a silent partition drops the bytes: TCP would retransmit, but nothing gets through
          return;
        }
        this.tap?.(n, from === a ? 'client' : 'server', d);
        let wait = this.delayMs;
        if (limited && this.uplinkBytesPerSec > 0) {
          const now = Date.now();
          releaseAt = Math.max(releaseAt, now) + (d.length * 1000) / this.uplinkBytesPerSec;
          wait += releaseAt - now;
          if (releaseAt - now > 1000) {
            from.pause();
            setTimeout(() => from.resume(), releaseAt - now - 500);
          }
        }
        if (wait > 0) setTimeout(send, wait);
        else send();
      });
    };
    pipe(a, b, true);
    pipe(b, a, false);
    const close = () => {
      this.pairs.delete(pair);
      a.destroy();
      b.destroy();
    };
    a.on('close', close);
    b.on('close', close);
    a.on('error', () => {});
    b.on('error', () => {});
  }

  /** Silent partition: nothing passes in either direction; connections stay open. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
  }

  /** Hard cut: every connection reset now. */
  cut(): void {
    for (const { a, b } of this.pairs) {
      a.resetAndDestroy();
      b.destroy();
    }
    this.pairs.clear();
  }

  /** Refuse (reset) new connections until allowed again. */
  refuse(on: boolean): void {
    this.refusing = on;
  }

  get open(): number {
    return this.pairs.size;
  }

  async close(): Promise<void> {
    this.cut();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()) ?? resolve());
  }
}
