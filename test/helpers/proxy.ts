import { createServer, connect, type Server, type Socket, type AddressInfo } from 'node:net';

/**
 * How a silent partition treats the bytes sent while it lasts:
 * - 'drop': they are gone, and so is every connection that lost bytes: it is reset when the
 *   partition heals, as TCP gives up on a connection whose segments never got through (TCP never
 *   delivers a stream with a hole in it, so such a connection cannot carry on);
 * - 'hold': they arrive when the partition heals, in order, as TCP's retransmissions would
 *   deliver them; a side that closes meanwhile is closed on the other side only after its held
 *   bytes went through (the peer's kernel keeps sending what was written before close()).
 */
export type PartitionMode = 'drop' | 'hold';

/** One direction of a proxied connection: bytes leave in order, after the link's delay. */
class Lane {
  private readonly queue: Array<{ due: number; data: Buffer }> = [];
  private timer?: NodeJS.Timeout;
  private ending = false;

  /** when the last queued byte may leave a narrow link */
  private releaseAt = 0;

  constructor(
    private readonly from: Socket,
    private readonly to: Socket,
    private readonly proxy: FaultProxy,
    /** the client-to-broker direction, which uplinkBytesPerSec narrows */
    private readonly uplink: boolean,
    private readonly deliver: (data: Buffer) => void = () => {},
  ) {}

  private write(data: Buffer): void {
    if (this.to.destroyed) return;
    this.deliver(data);
    this.to.write(data);
  }

  /** bytes were dropped: this connection's stream is broken */
  tainted = false;

  push(data: Buffer): void {
    if (this.to.destroyed) return;
    const p = this.proxy;
    if (p.partition === 'drop') {
      this.tainted = true;
      return;
    }
    const now = Date.now();
    let due = now + p.delayMs;
    if (this.uplink && p.uplinkBytesPerSec > 0) {
      this.releaseAt = Math.max(this.releaseAt, now) + (data.length * 1000) / p.uplinkBytesPerSec;
      due += this.releaseAt - now;
      // the sender feels a narrow link through TCP back-pressure: stop reading for a while
      if (this.releaseAt - now > 1000) {
        this.from.pause();
        setTimeout(() => this.from.resume(), this.releaseAt - now - 500);
      }
    }
    // held bytes wait with due = Infinity until resume() re-times them
    if (p.partition === 'hold') due = Infinity;
    if (this.queue.length === 0 && due <= now) {
      this.write(data);
      return;
    }
    this.queue.push({ due, data });
    this.schedule();
  }

  /**
   * The sending side closed: close the receiving side once everything queued went through.
   * A reset is passed on at once, as a reset (TCP discards what was not delivered).
   */
  end(reset: boolean): void {
    if (reset) {
      this.stop();
      if (!this.to.destroyed) this.to.resetAndDestroy();
      return;
    }
    this.ending = true;
    if (this.queue.length === 0) this.to.destroy();
  }

  /** After a partition: held bytes leave now (plus the link's delay). */
  release(): void {
    const due = Date.now() + this.proxy.delayMs;
    for (const q of this.queue) if (q.due === Infinity) q.due = due;
    this.schedule();
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const head = this.queue[0];
    if (!head) {
      if (this.ending) this.to.destroy();
      return;
    }
    if (head.due === Infinity) return;
    this.timer = setTimeout(() => this.flush(), Math.max(0, head.due - Date.now()));
  }

  private flush(): void {
    const now = Date.now();
    // a later chunk never overtakes an earlier one, even when the delay changed in between
    while (this.queue.length > 0 && this.queue[0].due <= now) {
      this.write(this.queue.shift()!.data);
    }
    this.schedule();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }

  /** A cut: whatever is queued is gone, and so is the connection. */
  kill(): void {
    this.stop();
    this.to.destroy();
  }
}

interface Pair {
  a: Socket;
  b: Socket;
  ab: Lane;
  ba: Lane;
}

/**
 * A TCP proxy between the daemon and the broker that injects real network faults:
 * pause (a silent partition: bytes stop both ways, nothing is closed), cut (connection reset),
 * refuse new connections, delay (a slow link; order is always kept) and a narrow uplink.
 */
export class FaultProxy {
  private server?: Server;
  private readonly pairs = new Set<Pair>();
  /** every lane that may still hold bytes, including those of connections already closed on one side */
  private readonly lanes = new Set<Lane>();
  /** the current silent partition, if any */
  partition: PartitionMode | undefined;
  private refusing = false;
  delayMs = 0;
  /** a narrow uplink: at most this many bytes per second from client to broker (0: unlimited) */
  uplinkBytesPerSec = 0;
  connections = 0;
  /** sees every chunk as it is delivered, numbered by connection (1, 2, ...): a packet capture */
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
    const id = ++this.connections;
    const b = connect(this.targetPort, this.targetHost);
    const pair: Pair = {
      a,
      b,
      ab: new Lane(a, b, this, true, (d) => this.tap?.(id, 'client', d)),
      ba: new Lane(b, a, this, false, (d) => this.tap?.(id, 'server', d)),
    };
    this.pairs.add(pair);
    a.on('data', (d: Buffer) => pair.ab.push(d));
    b.on('data', (d: Buffer) => pair.ba.push(d));
    const closed = (lane: Lane, other: Lane, hadError: boolean) => {
      this.pairs.delete(pair);
      other.stop();
      lane.end(hadError);
    };
    a.on('close', (hadError) => closed(pair.ab, pair.ba, hadError));
    b.on('close', (hadError) => closed(pair.ba, pair.ab, hadError));
    a.on('error', () => {});
    b.on('error', () => {});
    this.lanes.add(pair.ab).add(pair.ba);
  }

  /** Silent partition: nothing passes in either direction; connections stay open. */
  pause(mode: PartitionMode = 'drop'): void {
    this.partition = mode;
  }

  resume(): void {
    this.partition = undefined;
    for (const p of [...this.pairs]) {
      if (p.ab.tainted || p.ba.tainted) this.reset(p);
    }
    for (const lane of this.lanes) lane.release();
    this.lanes.clear();
    for (const p of this.pairs) this.lanes.add(p.ab).add(p.ba);
  }

  private reset(p: Pair): void {
    this.pairs.delete(p);
    p.ab.stop();
    p.ba.stop();
    if (!p.a.destroyed) p.a.resetAndDestroy();
    if (!p.b.destroyed) p.b.resetAndDestroy();
  }

  /** Hard cut: every connection reset now. */
  cut(): void {
    for (const p of [...this.pairs]) this.reset(p);
    // half-closed connections still waiting to deliver held bytes
    for (const lane of this.lanes) lane.kill();
    this.lanes.clear();
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
