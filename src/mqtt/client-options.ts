import type { IClientOptions } from 'mqtt';
import type { LinkOptions } from './link.js';

/** mqtt.js options for one connection of the link: a fresh client each time, reconnecting left to the link. */
export function clientOptions(o: LinkOptions): IClientOptions {
  const options: IClientOptions = {
    protocolVersion: o.protocolVersion,
    clientId: o.clientId,
    keepalive: o.keepaliveSec,
    connectTimeout: o.connectTimeoutMs,
    reconnectPeriod: 0, // we reconnect ourselves, with backoff and a fresh client
    clean: o.protocolVersion === 5 ? o.sessionExpirySec === 0 : !o.persistentSession311,
    username: o.username,
    password: o.password,
    resubscribe: false,
    // mqtt-packet's cache of every packet id is a large share of the idle heap (docs/benchmarks.md)
    writeCache: false,
  };
  if (o.protocolVersion === 5) {
    options.properties = {
      sessionExpiryInterval: o.sessionExpirySec,
      ...(o.receiveMaximum ? { receiveMaximum: o.receiveMaximum } : {}),
      ...(o.maxIncomingBytes ? { maximumPacketSize: o.maxIncomingBytes } : {}),
    };
    // autoAssign, not autoUse: autoUseTopicAlias only reuses aliases the caller set by hand, so it
    // sent the full topic every time (seen on the wire against Mosquitto). Aliases live and die
    // with a connection, and every connection is a fresh client: nothing stale can be reused.
    if (o.topicAlias) options.autoAssignTopicAlias = true;
  }
  if (o.tls) Object.assign(options, o.tls);
  if (o.will) options.will = { topic: o.will.topic, payload: Buffer.from(o.will.payload()), qos: 1, retain: o.will.retain };
  return options;
}
