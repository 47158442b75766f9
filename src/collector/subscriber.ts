import { EventEmitter } from 'node:events';
import type { IPublishPacket, MqttClient } from 'mqtt';
import type { Logger } from '../util/logger.js';
import { MqttLink, type LinkLimits, type LinkOptions } from '../mqtt/link.js';

/** One message from the broker, with the PUBACK left to the receiver. */
export interface InboundMessage {
  topic: string;
  payload: Buffer;
  contentType: string | undefined;
  /** a retained message (the broker's copy of an older publish, sent on subscribing) */
  retained: boolean;
  /**
   * Sends the PUBACK: call it once what the message carried is committed (or recorded as
   * rejected). A no-op when the connection it came on is gone: the broker delivers it again.
   */
  ack(): void;
}

/** What the wiring needs from the broker side: messages with their acks, and a pause while the database is away. */
export interface MessageSource {
  on(event: 'message', fn: (m: InboundMessage) => void): unknown;
  /** disconnect, keeping the session: the broker keeps what was not acknowledged */
  pause(): Promise<void>;
  resume(): void;
}

export interface SubscriberOptions {
  link: Omit<LinkOptions, 'onClient' | 'persistentSession311' | 'receiveMaximum'>;
  topicPrefix: string;
  shareGroup?: string;
  /** messages received and not acknowledged, at most */
  receiveMaximum: number;
  /** and their bytes, at most */
  maxHeldBytes: number;
}

type SubscriberEvents = {
  message: [InboundMessage];
  subscribed: [{ sessionPresent: boolean }];
};

// Handed to mqtt.js's handleMessage callback: it then skips its own PUBACK and takes the next packet.
const PUBACK_LATER = new Error('PUBACK deferred until the commit');

/**
 * The broker side of the collector: a persistent session subscribed to the fleet's topics, that
 * hands every message on with its own ack and sends no PUBACK by itself.
 *
 * Why not mqtt.js's customHandleAcks (MQTT 5 only): mqtt.js handles incoming packets one at a
 * time, and a held callback holds the next PUBLISH and the PINGRESP behind it, so every message
 * would wait for its own commit. Here mqtt.js moves on at once and the PUBACK is written when the
 * store says so, the same way under 3.1.1 and 5; the number (and bytes) of messages awaiting their
 * PUBACK is bounded: the MQTT 5 Receive Maximum, and beyond the bound the socket is not read.
 */
export class FleetSubscriber extends EventEmitter<SubscriberEvents> implements MessageSource {
  private readonly link: MqttLink;
  /** the client whose messages are taken; any other client's are dropped unacknowledged */
  private client?: MqttClient;
  private held = 0;
  private heldBytes = 0;
  /** mqtt.js's callback for the packet that went over the bound: called when room is made */
  private resumePump?: () => void;
  private everConnected = false;

  constructor(
    private readonly opts: SubscriberOptions,
    private readonly log: Logger,
  ) {
    super();
    this.link = new MqttLink(
      { ...opts.link, persistentSession311: true, receiveMaximum: opts.receiveMaximum, onClient: (c) => this.attach(c) },
      log,
    );
    this.link.on('connect', (limits) => void this.subscribe(limits));
  }

  get connected(): boolean {
    return this.link.connected;
  }

  get lastError(): string | undefined {
    return this.link.lastError;
  }

  /** messages received and not acknowledged yet */
  get inFlight(): number {
    return this.held;
  }

  start(): void {
    this.link.start();
  }

  /** Disconnects, keeping the session: what was not acknowledged is delivered again after resume(). */
  async pause(): Promise<void> {
    this.client = undefined;
    await this.link.pause();
  }

  resume(): void {
    this.link.resume();
  }

  /** Publishes on the same connection (the collector's `stored` answers); resolved on PUBACK, typed errors otherwise (MqttLink). */
  publish(topic: string, payload: string, opts: { retain?: boolean }, timeoutMs: number): Promise<void> {
    return this.link.publish(topic, payload, opts, timeoutMs);
  }

  async stop(): Promise<void> {
    this.client = undefined;
    await this.link.stop();
  }

  private attach(client: MqttClient): void {
    this.client = client;
    this.held = 0;
    this.heldBytes = 0;
    this.resumePump = undefined;
    client.handleMessage = (packet, done) => this.onPublish(client, packet as IPublishPacket, done);
  }

  private onPublish(client: MqttClient, packet: IPublishPacket, done: (err?: Error) => void): void {
    if (client !== this.client) return done(PUBACK_LATER); // a connection being given up
    const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    const bytes = payload.length;
    this.held++;
    this.heldBytes += bytes;
    let settled = false;
    const msg: InboundMessage = {
      topic: packet.topic,
      payload,
      contentType: packet.properties?.contentType,
      retained: packet.retain,
      ack: () => {
        if (settled || client !== this.client) return;
        settled = true;
        this.held--;
        this.heldBytes -= bytes;
        // QoS 0 has no PUBACK; a closed client would queue it for a reconnect that never comes
        if (packet.qos > 0 && client.connected) sendPuback(client, packet.messageId!);
        if (this.resumePump && this.held <= this.opts.receiveMaximum && this.heldBytes < this.opts.maxHeldBytes) {
          const next = this.resumePump;
          this.resumePump = undefined;
          next();
        }
      },
    };
    try {
      this.emit('message', msg);
    } catch (err) {
      this.log.error({ err, topic: packet.topic }, 'message handler failed; the message is not acknowledged');
    }
    // under MQTT 5 the broker keeps to the Receive Maximum itself; under 3.1.1 only this stops it
    if (this.held > this.opts.receiveMaximum || this.heldBytes >= this.opts.maxHeldBytes) this.resumePump = () => done(PUBACK_LATER);
    else done(PUBACK_LATER);
  }

  private filters(): string[] {
    const p = this.opts.topicPrefix;
    const shared = (f: string) => (this.opts.shareGroup ? `$share/${this.opts.shareGroup}/${f}` : f);
    // statuses are retained, and a shared subscription gets no retained messages: every member takes them all
    return [shared(`${p}/+/readings`), shared(`${p}/+/dropped`), `${p}/+/status`];
  }

  /**
   * Subscribes on every connect, whatever the broker says of the session: a broker restarted
   * without its persistence file has forgotten the subscriptions, and Mosquitto 2.0 restores a
   * session's `$share` subscription without delivering to it (FACTS.md). A fresh client always
   * sends the SUBSCRIBE (mqtt.js skips it only for filters the same client object subscribed).
   * No UNSUBSCRIBE first: it would leave the share group without this member for a moment, and
   * what is published then is delivered to nobody.
   */
  private async subscribe(limits: LinkLimits): Promise<void> {
    const client = this.client;
    if (!client) return;
    if (this.everConnected && !limits.sessionPresent) {
      this.log.warn({}, 'the broker did not keep our session: what it received while the collector was away may not come (was it restarted without persistence?)');
    }
    this.everConnected = true;
    const filters = this.filters();
    // no SUBACK in time: a connection that subscribes nothing is worth nothing; a new one is made
    const timer = setTimeout(() => {
      if (client !== this.client) return;
      this.log.warn({ timeoutMs: this.opts.link.connectTimeoutMs }, 'no SUBACK in time: reconnecting');
      client.end(true);
    }, this.opts.link.connectTimeoutMs);
    try {
      const granted = await client.subscribeAsync(filters, { qos: 1 });
      const refused = granted.filter((g) => g.qos >= 0x80);
      if (refused.length > 0) {
        this.log.error({ refused: refused.map((g) => ({ topic: g.topic, reasonCode: g.qos })) }, 'the broker refused a subscription (check its ACL; shared subscriptions need MQTT 5 and a broker that has them)');
        return;
      }
      this.log.info({ filters, sessionPresent: limits.sessionPresent }, 'subscribed');
      this.emit('subscribed', { sessionPresent: limits.sessionPresent });
    } catch (err) {
      // the connection went away meanwhile: the next one subscribes again
      if (client === this.client) this.log.warn({ err: (err as Error).message }, 'subscribe failed');
    } finally {
      clearTimeout(timer);
    }
  }
}

/** mqtt.js has no public call to acknowledge a message later; its own PUBACK goes out the same way. */
function sendPuback(client: MqttClient, messageId: number): void {
  (client as unknown as { _sendPacket(p: Record<string, unknown>): void })._sendPacket({ cmd: 'puback', messageId, reasonCode: 0 });
}
