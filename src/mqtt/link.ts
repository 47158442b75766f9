import { EventEmitter } from 'node:events';
import { connect, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from '../util/logger.js';
import { Backoff } from '../util/backoff.js';
import { classifyPublishError, PublishUnknownError } from './errors.js';
import { closedBeforeConnack, describeConnectError, describeError } from './connect-errors.js';
import { clientOptions } from './client-options.js';
import { FallingRate } from '../util/log-throttle.js';
import { redactUrl } from '../util/url.js';

export interface LinkOptions {
  url: string;
  protocolVersion: 4 | 5;
  clientId: string;
  keepaliveSec: number;
  connectTimeoutMs: number;
  /** MQTT 5 session expiry; 0 starts a clean session every time */
  sessionExpirySec: number;
  username?: string;
  password?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string; rejectUnauthorized: boolean };
  /** the last will; its payload is made at each connect (it may say when that connection began) */
  will?: { topic: string; payload: () => string; retain: boolean };
  /** use MQTT 5 topic aliases when the broker allows them */
  topicAlias?: boolean;
  retry: { initialDelayMs: number; maxDelayMs: number };
  /** MQTT 3.1.1 keeps a session only with clean false (MQTT 5 keeps one whenever sessionExpirySec > 0) */
  persistentSession311?: boolean;
  /** MQTT 5 Receive Maximum: QoS 1 messages the broker may send before their PUBACK */
  receiveMaximum?: number;
  /** called with each fresh mqtt.js client before it connects (a subscriber installs its message handling) */
  onClient?: (client: MqttClient) => void;
  /** MQTT 5: the largest packet the broker may send us (what the device subscribes to is small) */
  maxIncomingBytes?: number;
}

/** A message on a topic the link subscribed to (mqtt.js acknowledges QoS 1 itself, after the listeners ran). */
export interface LinkMessage {
  topic: string;
  payload: Buffer;
  packet: IPublishPacket;
}

/** What the broker told us in its CONNACK (MQTT 5), with the protocol's defaults otherwise. */
export interface LinkLimits {
  receiveMaximum: number;
  maximumPacketSize: number | undefined;
  topicAliasMaximum: number;
  sessionPresent: boolean;
}

export type LinkState = 'idle' | 'connecting' | 'connected' | 'waiting' | 'paused' | 'stopped';

interface Pending {
  resolve: () => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  /** when it went on the wire */
  sentAt?: number;
  /** handed to mqtt.js (counts against the broker's Receive Maximum), or waiting for a slot */
  send?: () => void;
}

export type LinkEvents = {
  connect: [LinkLimits];
  message: [LinkMessage];
  disconnect: [{ reason: string }];
  connectFailed: [{ reason: string; attempts: number; first: boolean }];
};

/** a close this soon after a publish went out is taken as the broker's answer to it */
const CLOSED_AFTER_PUBLISH_MS = 2000;
/** a connection that lasted this long was a working one: the reconnect backoff starts over */
const STABLE_CONNECTION_MS = 10_000;

/**
 * One MQTT connection to the broker, kept up with backoff, that publishes QoS 1 messages and
 * tells the caller how each ended: resolved on PUBACK, PublishRejectedError on a refusal,
 * PublishUnknownError when nobody can know. It knows nothing of readings.
 * A fresh mqtt.js client per connection: mqtt.js would resend its in-flight messages after a
 * reconnect, doubling the duplicates of rows the sync loop sends again anyway (they are still
 * pending); dropping the client settles each of them here as "unknown", exactly once.
 */
export class MqttLink extends EventEmitter<LinkEvents> {
  private client?: MqttClient;
  private readonly pending = new Map<number, Pending>();
  /** publishes on the wire awaiting their PUBACK; never more than the broker's Receive Maximum */
  private onWire = 0;
  /** ids of publishes waiting for a slot, oldest first */
  private readonly waitingForSlot: number[] = [];
  private nextId = 0;
  private readonly backoff: Backoff;
  private retryTimer?: NodeJS.Timeout;
  private connectGuard?: NodeJS.Timeout;
  private _state: LinkState = 'idle';
  private _limits?: LinkLimits;
  private error?: string;
  private attemptError?: string;
  private outageStart?: number;
  private outageAttempts = 0;
  /** an outage is reported 1, 2, 4 … 60 minutes apart, never once per attempt */
  private readonly outageReports = new FallingRate(60_000, 3_600_000);
  private connectedSince?: number;
  /** the reason code of the broker's DISCONNECT on the current connection (MQTT 5) */
  private disconnectCode?: number;
  /** topic filters subscribed on every connection (QoS): each is a fresh client, and a broker may have forgotten the session */
  private readonly filters = new Map<string, 0 | 1>();

  constructor(
    private readonly opts: LinkOptions,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    super();
    this.backoff = new Backoff(opts.retry.initialDelayMs, opts.retry.maxDelayMs);
  }

  get state(): LinkState {
    return this._state;
  }

  get connected(): boolean {
    return this._state === 'connected';
  }

  get limits(): LinkLimits | undefined {
    return this._limits;
  }

  /** What went wrong with the last connection or attempt (cleared at each connect). */
  get lastError(): string | undefined {
    return this.error;
  }

  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * Subscribes to a topic filter now if connected, and again on every connection. Messages come
   * as 'message' events; a failed SUBSCRIBE is logged and tried again at the next connection.
   */
  subscribe(filter: string, qos: 0 | 1 = 1): void {
    this.filters.set(filter, qos);
    if (this.client && this._state === 'connected') this.sendSubscribe(this.client, [[filter, qos]]);
  }

  private sendSubscribe(client: MqttClient, filters: ReadonlyArray<[string, 0 | 1]>): void {
    if (filters.length === 0) return;
    client.subscribe(Object.fromEntries(filters.map(([f, qos]) => [f, { qos }])), (err, granted) => {
      const refused = (granted ?? []).filter((g) => g.qos >= 0x80).map((g) => g.topic);
      if (err || refused.length > 0) this.log.warn({ filters: refused.length ? refused : filters.map(([f]) => f), err: err?.message }, 'subscription refused by the broker; tried again at the next connection');
    });
  }

  /** Starts connecting; reconnects with backoff until paused or stopped. */
  start(): void {
    if (this._state === 'idle') this.connectOnce();
  }

  /** Skips any backoff wait and connects now (force sync, going online). */
  connectNow(): void {
    if (this._state === 'waiting' || this._state === 'idle' || this._state === 'paused') {
      clearTimeout(this.retryTimer);
      this.backoff.reset();
      this.connectOnce();
    }
  }

  /**
   * Publishes one QoS 1 message and resolves when its PUBACK says success. Whoever publishes
   * (readings, status, drop announcements), no more than the broker's Receive Maximum are on the
   * wire at once (mqtt.js does not enforce it); a publish beyond it waits for a slot, and its
   * timeout runs from this call.
   */
  publish(topic: string, payload: string | Buffer, opts: { retain?: boolean; properties?: Record<string, unknown>; qos?: 0 | 1 }, timeoutMs: number): Promise<void> {
    const client = this.client;
    if (this._state !== 'connected' || !client) {
      return Promise.reject(new PublishUnknownError('not connected to the broker', 'not-connected'));
    }
    if (opts.qos === 0) return this.publishAtMostOnce(client, topic, payload, opts, timeoutMs);
    return new Promise<void>((resolve, reject) => {
      const id = ++this.nextId;
      const timer = setTimeout(() => {
        this.settle(id, new PublishUnknownError(`no PUBACK within ${timeoutMs} ms`, 'timeout'));
        // a silent link or a stuck broker: start over on a fresh connection instead of waiting
        // behind it (see the class comment on why in-flight messages are not resent by mqtt.js)
        this.teardown(`publish timeout (${timeoutMs} ms)`, false);
      }, timeoutMs);
      const pubOpts: Record<string, unknown> = { qos: 1, retain: opts.retain ?? false };
      if (opts.properties && this.opts.protocolVersion === 5) pubOpts.properties = opts.properties;
      const send = () => {
        this.onWire++;
        client.publish(topic, payload, pubOpts, (err) => {
          if (!this.pending.has(id)) return;
          if (!err) return this.settle(id);
          this.settle(id, classifyPublishError(err, this.client === client && this._state === 'connected'));
        });
      };
      this.pending.set(id, { resolve, reject, timer, send });
      if (this.onWire < this.slots()) this.sendNow(id);
      else this.waitingForSlot.push(id);
    });
  }

  /**
   * QoS 0: the live lane (live values, command replies). No PUBACK, so it takes no slot of the
   * Receive Maximum and never waits behind a full batch window; resolved once handed to the socket.
   */
  private publishAtMostOnce(client: MqttClient, topic: string, payload: string | Buffer, opts: { retain?: boolean; properties?: Record<string, unknown> }, timeoutMs: number): Promise<void> {
    const pubOpts: Record<string, unknown> = { qos: 0, retain: opts.retain ?? false };
    if (opts.properties && this.opts.protocolVersion === 5) pubOpts.properties = opts.properties;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new PublishUnknownError(`not written within ${timeoutMs} ms`, 'timeout')), timeoutMs);
      client.publish(topic, payload, pubOpts, (err) => {
        clearTimeout(timer);
        if (err) reject(classifyPublishError(err, this.client === client && this._state === 'connected'));
        else resolve();
      });
    });
  }

  /** How many publishes may await a PUBACK at once: the broker's Receive Maximum (MQTT 5). */
  private slots(): number {
    return this._limits?.receiveMaximum ?? 65535;
  }

  private sendNow(id: number): void {
    const p = this.pending.get(id);
    const send = p?.send;
    if (!p || !send) return;
    p.send = undefined; // on the wire now
    p.sentAt = this.now();
    send();
  }

  private settle(id: number, err?: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (p.send === undefined) this.onWire--;
    else this.waitingForSlot.splice(this.waitingForSlot.indexOf(id), 1);
    // a slot freed: the oldest waiting publish goes out (not once the connection is being dropped:
    // everything still pending is settled as unknown then)
    while (this.client && this.onWire < this.slots() && this.waitingForSlot.length > 0) this.sendNow(this.waitingForSlot.shift()!);
    clearTimeout(p.timer);
    if (err) p.reject(err);
    else p.resolve();
  }

  private connectOnce(): void {
    this._state = 'connecting';
    this.attemptError = undefined;
    const o = this.opts;
    const options = clientOptions(o);

    let client: MqttClient;
    try {
      client = connect(o.url, options);
    } catch (err) {
      this.onConnectFailed((err as Error).message);
      return;
    }
    this.client = client;
    o.onClient?.(client);
    // mqtt.js has its own connect timeout; this guard also covers a TLS handshake that hangs
    this.connectGuard = setTimeout(() => {
      if (this.client === client && this._state === 'connecting') {
        this.error = `no CONNACK within ${o.connectTimeoutMs} ms`;
        this.teardown(this.error);
      }
    }, o.connectTimeoutMs + 1000);

    client.on('connect', (connack: IConnackPacket) => {
      if (this.client !== client) return;
      clearTimeout(this.connectGuard);
      const p = connack.properties ?? {};
      this._limits = {
        receiveMaximum: p.receiveMaximum ?? 65535,
        maximumPacketSize: p.maximumPacketSize,
        topicAliasMaximum: p.topicAliasMaximum ?? 0,
        sessionPresent: connack.sessionPresent,
      };
      this._state = 'connected';
      this.connectedSince = this.now();
      const downMs = this.outageStart !== undefined ? this.now() - this.outageStart : undefined;
      this.log.info({ url: redactUrl(o.url), ...this._limits, downMs, attempts: this.outageAttempts || undefined }, 'connected to broker');
      this.outageStart = undefined;
      this.outageAttempts = 0;
      this.error = undefined;
      this.sendSubscribe(client, [...this.filters]);
      this.emit('connect', this._limits);
    });
    client.on('message', (topic, payload, packet) => {
      if (this.client !== client) return;
      try {
        this.emit('message', { topic, payload, packet });
      } catch (err) {
        // a listener's bug must not cost the connection (mqtt.js would not acknowledge what follows)
        this.log.error({ err, topic }, 'handling an incoming message failed');
      }
    });
    client.on('error', (err: Error & { code?: number | string }) => {
      if (this.client !== client) return;
      // the first error of an attempt is the cause; the rest (a TLS failure comes twice, then
      // ECONNRESET) would hide it
      if (this._state === 'connecting') this.attemptError ??= describeConnectError(err, o.protocolVersion);
      this.error = this._state === 'connecting' ? this.attemptError : describeError(err);
    });
    client.on('disconnect', (packet) => {
      if (this.client !== client) return;
      this.disconnectCode = packet.reasonCode;
      // MQTT 5: the broker tells why it is closing the connection
      this.error = `broker sent DISCONNECT, reason code ${packet.reasonCode ?? 0}${packet.properties?.reasonString ? ` (${packet.properties.reasonString})` : ''}`;
    });
    client.on('close', () => {
      if (this.client !== client) return;
      // while connecting, only this attempt's error counts: lastError may be an older attempt's
      if (this._state === 'connecting') this.teardown(this.attemptError ?? closedBeforeConnack(o.protocolVersion));
      else this.teardown(this.error ?? 'connection closed', true);
    });
  }

  /**
   * Drops the current client, settles everything in flight as unknown, and plans a reconnect.
   * `byBroker`: the broker closed the connection (not our timeout): publishes that had just gone
   * out are marked as the likely cause.
   */
  private teardown(reason: string, byBroker = false): void {
    const client = this.client;
    if (!client) return;
    this.client = undefined;
    clearTimeout(this.connectGuard);
    client.removeAllListeners();
    client.on('error', () => {}); // late errors of a dropped client are not ours to report
    // settled here, before end(): end() fails mqtt.js's own callbacks at once, with less to say
    const t = this.now();
    const recent = [...this.pending.values()].filter((p) => p.sentAt !== undefined && t - p.sentAt <= CLOSED_AFTER_PUBLISH_MS);
    const suspects = byBroker && recent.length > 0 ? { onWire: this.onWire, reasonCode: this.disconnectCode } : undefined;
    this.disconnectCode = undefined;
    for (const [id, p] of [...this.pending]) {
      const closedAfterPublish = suspects && recent.includes(p) ? suspects : undefined;
      this.settle(id, new PublishUnknownError(`connection lost: ${reason}`, 'connection-lost', closedAfterPublish));
    }
    client.end(true);
    const wasConnected = this._state === 'connected';
    if (this._state === 'stopped' || this._state === 'paused') return;
    if (wasConnected) {
      const connectedForMs = this.connectedSince !== undefined ? t - this.connectedSince : 0;
      this.error = reason;
      this.log.warn({ reason, connectedForMs }, 'disconnected from broker');
      this.outageStart = t;
      this.outageReports.start(t);
      this.emit('disconnect', { reason });
      // a connection that did not last is no reason to start the backoff over: a broker that
      // drops us right after each CONNACK would otherwise get a connection a second
      if (connectedForMs >= STABLE_CONNECTION_MS) this.backoff.reset();
      this.scheduleReconnect(connectedForMs >= STABLE_CONNECTION_MS);
    } else {
      this.onConnectFailed(reason);
    }
  }

  private onConnectFailed(reason: string): void {
    this.error = reason;
    this.outageAttempts++;
    const t = this.now();
    if (this.outageStart === undefined) {
      this.outageStart = t;
      this.outageReports.start(t);
      this.log.warn({ url: redactUrl(this.opts.url), error: reason }, 'cannot reach broker; readings stay buffered, retrying with backoff');
    } else if (this.outageReports.due(t)) {
      this.log.warn({ error: reason, attempts: this.outageAttempts, downMs: t - this.outageStart }, 'broker still unreachable');
    } else {
      this.log.debug({ error: reason, attempts: this.outageAttempts }, 'connect attempt failed');
    }
    this.emit('connectFailed', { reason, attempts: this.outageAttempts, first: this.outageAttempts === 1 });
    this.scheduleReconnect(false);
  }

  private scheduleReconnect(immediateFirst: boolean): void {
    if (this._state === 'stopped' || this._state === 'paused') return;
    this._state = 'waiting';
    // after losing a working connection, try again soon (most drops are brief), but not at once:
    // a broker that dropped every device at the same moment should not get them all back in step
    const delay = immediateFirst ? this.backoff.first() : this.backoff.next();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => {
      if (this._state === 'waiting') this.connectOnce();
    }, delay);
  }

  /** Disconnects cleanly and stays disconnected until resume() (offline by choice). */
  async pause(): Promise<void> {
    await this.disconnect('paused');
  }

  resume(): void {
    if (this._state === 'paused') {
      this._state = 'idle';
      this.backoff.reset();
      this.connectOnce();
    }
  }

  /** Disconnects cleanly (the broker does not publish the will) and stops reconnecting. */
  async stop(): Promise<void> {
    await this.disconnect('stopped');
  }

  private async disconnect(next: 'paused' | 'stopped'): Promise<void> {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectGuard);
    const client = this.client;
    const wasConnected = this._state === 'connected';
    this._state = next;
    if (!client) return;
    this.client = undefined;
    client.removeAllListeners();
    client.on('error', () => {});
    for (const id of [...this.pending.keys()]) this.settle(id, new PublishUnknownError('disconnecting', 'stopping'));
    if (wasConnected) {
      // end(false) sends DISCONNECT but waits for in-flight acks forever: bound it
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          client.end(true);
          resolve();
        }, 2000);
        client.end(false, {}, () => {
          clearTimeout(t);
          resolve();
        });
      });
      this.log.info({ state: next }, 'disconnected from broker');
      this.emit('disconnect', { reason: next });
    } else {
      client.end(true);
    }
  }
}
