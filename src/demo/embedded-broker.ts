import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import type { IConnectPacket, IPublishPacket, ISubscribePacket, Packet } from 'mqtt-packet';

/**
 * A small in-process MQTT broker (3.1.1 and 5) for `edge-sensor demo` and for tests that must
 * control acknowledgements: hold back PUBACKs, refuse a publish with a reason code, advertise a
 * small Receive Maximum or Maximum Packet Size. QoS 0 and 1 (QoS 2 is acknowledged but treated
 * as QoS 1), retained messages, last wills, wildcard subscriptions, incoming topic aliases.
 * No persistence and no sessions: it is not a production broker.
 */

/** What to do with a PUBLISH from a client: acknowledge (optionally with a reason code) or hold the PUBACK. */
export type PublishDecision = 'ack' | 'hold' | { reasonCode: number };

export interface EmbeddedBrokerOptions {
  port?: number;
  host?: string;
  /** advertised in CONNACK to MQTT 5 clients */
  receiveMaximum?: number;
  maximumPacketSize?: number;
  topicAliasMaximum?: number;
  /** decides each client PUBLISH of QoS >= 1 */
  onPublish?: (client: BrokerClient, packet: IPublishPacket) => PublishDecision;
  /** delay every PUBACK by this much (lets tests observe a client's in-flight window) */
  ackDelayMs?: number;
}

export interface BrokerClient {
  id: string;
  protocolVersion: number;
  socket: Socket;
  /** QoS >= 1 publishes received from this client and not yet acknowledged */
  unacked: number;
  maxUnacked: number;
  publishes: number;
}

interface Subscription {
  filter: string;
  qos: number;
}

interface Conn extends BrokerClient {
  subs: Subscription[];
  will?: IConnectPacket['will'];
  aliases: Map<number, string>;
  nextMsgId: number;
  closedCleanly: boolean;
  send(p: Packet): void;
}

export interface HeldPuback {
  client: BrokerClient;
  messageId: number;
  release(reasonCode?: number): void;
}

/** MQTT topic filter matching with + and #. */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i > 0 || !topic.startsWith('$');
    if (i >= t.length) return false;
    if (f[i] === '+') {
      if (i === 0 && t[0].startsWith('$')) return false;
      continue;
    }
    if (f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

export class EmbeddedBroker {
  private server?: Server;
  private readonly conns = new Set<Conn>();
  private readonly retained = new Map<string, IPublishPacket>();
  readonly held: HeldPuback[] = [];
  /** every message published by clients, in arrival order (topic and payload) */
  readonly log: Array<{ clientId: string; topic: string; payload: Buffer; qos: number; retain: boolean; properties?: IPublishPacket['properties'] }> = [];
  keepLog = false;

  constructor(private readonly opts: EmbeddedBrokerOptions = {}) {}

  get port(): number {
    return (this.server?.address() as AddressInfo).port;
  }

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get clients(): BrokerClient[] {
    return [...this.conns];
  }

  set onPublish(fn: EmbeddedBrokerOptions['onPublish']) {
    this.opts.onPublish = fn;
  }

  async listen(): Promise<this> {
    this.server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    return this;
  }

  /** Closes every connection (without wills: the broker is going away) and the listener. */
  async close(): Promise<void> {
    for (const c of this.conns) {
      c.closedCleanly = true;
      c.socket.destroy();
    }
    this.conns.clear();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** Drops every client connection abruptly (their wills are published). */
  dropClients(): void {
    for (const c of [...this.conns]) c.socket.destroy();
  }

  /** Sends every held PUBACK now (with success, or the given reason code). */
  releaseHeld(reasonCode?: number): number {
    const all = this.held.splice(0);
    for (const h of all) h.release(reasonCode);
    return all.length;
  }

  /** Publishes as the broker itself (e.g. to seed a retained message). */
  publish(topic: string, payload: string | Buffer, retain = false): void {
    this.route({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, retain, dup: false } as IPublishPacket);
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const parser = mqttPacket.parser();
    const conn: Conn = {
      id: '',
      protocolVersion: 4,
      socket,
      unacked: 0,
      maxUnacked: 0,
      publishes: 0,
      subs: [],
      aliases: new Map(),
      nextMsgId: 1,
      closedCleanly: false,
      send: (p) => {
        if (!socket.destroyed) socket.write(mqttPacket.generate(p, { protocolVersion: conn.protocolVersion }));
      },
    };
    parser.on('packet', (p: Packet) => {
      try {
        this.handle(conn, p);
      } catch {
        socket.destroy();
      }
    });
    parser.on('error', () => socket.destroy());
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => {});
    socket.on('close', () => {
      const known = this.conns.delete(conn);
      if (known && !conn.closedCleanly && conn.will) {
        this.route({ cmd: 'publish', topic: conn.will.topic, payload: Buffer.from(conn.will.payload), qos: conn.will.qos, retain: conn.will.retain, dup: false } as IPublishPacket);
      }
    });
  }

  private handle(c: Conn, p: Packet): void {
    switch (p.cmd) {
      case 'connect': {
        c.protocolVersion = p.protocolVersion ?? 4;
        c.id = p.clientId || `anon-${Math.random().toString(36).slice(2)}`;
        c.will = p.will;
        // a second connection with the same client id takes over the session
        for (const other of this.conns) {
          if (other.id === c.id) {
            other.closedCleanly = false;
            other.socket.destroy();
          }
        }
        this.conns.add(c);
        const properties: Record<string, number> = {};
        if (this.opts.receiveMaximum) properties.receiveMaximum = this.opts.receiveMaximum;
        if (this.opts.maximumPacketSize) properties.maximumPacketSize = this.opts.maximumPacketSize;
        if (this.opts.topicAliasMaximum) properties.topicAliasMaximum = this.opts.topicAliasMaximum;
        c.send({ cmd: 'connack', sessionPresent: false, returnCode: 0, reasonCode: 0, ...(c.protocolVersion === 5 ? { properties } : {}) } as Packet);
        return;
      }
      case 'publish':
        return this.onClientPublish(c, p);
      case 'pubrel':
        c.send({ cmd: 'pubcomp', messageId: p.messageId } as Packet);
        return;
      case 'subscribe':
        return this.onSubscribe(c, p);
      case 'unsubscribe':
        c.subs = c.subs.filter((s) => !p.unsubscriptions.includes(s.filter));
        c.send({ cmd: 'unsuback', messageId: p.messageId, ...(c.protocolVersion === 5 ? { granted: p.unsubscriptions.map(() => 0) } : {}) } as Packet);
        return;
      case 'pingreq':
        c.send({ cmd: 'pingresp' } as Packet);
        return;
      case 'disconnect':
        c.closedCleanly = true;
        c.socket.end();
        return;
      default:
        return; // puback/pubrec/pubcomp from subscribers: nothing to do without retries
    }
  }

  private onClientPublish(c: Conn, p: IPublishPacket): void {
    const alias = p.properties?.topicAlias;
    if (alias !== undefined) {
      if (p.topic) c.aliases.set(alias, p.topic);
      else p.topic = c.aliases.get(alias) ?? '';
      delete p.properties!.topicAlias;
    }
    if (!p.topic) {
      c.socket.destroy(); // protocol error: unknown alias
      return;
    }
    c.publishes++;
    if (p.qos === 0) {
      this.accepted(c, p);
      return;
    }
    c.unacked++;
    c.maxUnacked = Math.max(c.maxUnacked, c.unacked);
    const decision = this.opts.onPublish?.(c, p) ?? 'ack';
    const ack = (reasonCode = 0) => {
      c.unacked--;
      if (reasonCode < 0x80) this.accepted(c, p);
      const cmd = p.qos === 2 ? 'pubrec' : 'puback';
      c.send({ cmd, messageId: p.messageId, ...(c.protocolVersion === 5 && reasonCode ? { reasonCode } : {}) } as Packet);
    };
    if (decision === 'hold') {
      this.held.push({ client: c, messageId: p.messageId!, release: (rc) => ack(rc ?? 0) });
    } else if (decision === 'ack') {
      if (this.opts.ackDelayMs) setTimeout(() => ack(0), this.opts.ackDelayMs);
      else ack(0);
    } else {
      // MQTT 3.1.1 cannot say no: the broker acknowledges and drops the message
      ack(c.protocolVersion === 5 ? decision.reasonCode : 0);
    }
  }

  private accepted(c: Conn, p: IPublishPacket): void {
    if (this.keepLog) this.log.push({ clientId: c.id, topic: p.topic, payload: Buffer.from(p.payload as Buffer), qos: p.qos, retain: p.retain, properties: p.properties });
    this.route(p);
  }

  private route(p: IPublishPacket): void {
    const payload = Buffer.isBuffer(p.payload) ? p.payload : Buffer.from(p.payload);
    if (p.retain) {
      if (payload.length === 0) this.retained.delete(p.topic);
      else this.retained.set(p.topic, { ...p, payload });
    }
    for (const s of this.conns) {
      let qos = -1;
      for (const sub of s.subs) if (topicMatches(sub.filter, p.topic)) qos = Math.max(qos, Math.min(sub.qos, p.qos));
      if (qos >= 0) this.deliver(s, p.topic, payload, qos, false, p.properties);
    }
  }

  private deliver(s: Conn, topic: string, payload: Buffer, qos: number, retain: boolean, properties?: IPublishPacket['properties']): void {
    const out: Record<string, unknown> = { cmd: 'publish', topic, payload, qos: Math.min(qos, 1), retain, dup: false };
    if (qos > 0) {
      out.messageId = s.nextMsgId;
      s.nextMsgId = (s.nextMsgId % 65535) + 1;
    }
    if (s.protocolVersion === 5 && properties) {
      const { topicAlias: _drop, ...rest } = properties;
      out.properties = rest;
    }
    s.send(out as unknown as Packet);
  }

  private onSubscribe(c: Conn, p: ISubscribePacket): void {
    const granted: number[] = [];
    for (const sub of p.subscriptions) {
      const qos = Math.min(sub.qos, 1);
      c.subs = c.subs.filter((s) => s.filter !== sub.topic);
      c.subs.push({ filter: sub.topic, qos });
      granted.push(qos);
    }
    c.send({ cmd: 'suback', messageId: p.messageId, granted } as Packet);
    for (const sub of p.subscriptions) {
      for (const [topic, msg] of this.retained) {
        if (topicMatches(sub.topic, topic)) this.deliver(c, topic, msg.payload as Buffer, Math.min(sub.qos, msg.qos), true, msg.properties);
      }
    }
  }
}
