/** The broker refused a publish (MQTT 5 PUBACK reason code >= 0x80, or a packet it cannot take). */
export class PublishRejectedError extends Error {
  constructor(
    message: string,
    readonly reasonCode: number | undefined,
  ) {
    super(message);
    this.name = 'PublishRejectedError';
  }
}

/**
 * The fate of a publish is unknown: no PUBACK within the timeout, the connection dropped,
 * or the process is stopping. The broker may or may not have the message.
 */
export class PublishUnknownError extends Error {
  constructor(
    message: string,
    readonly why: 'timeout' | 'connection-lost' | 'not-connected' | 'stopping',
    /**
     * The broker closed the connection within moments of this publish going out, with this many
     * publishes on the wire: a broker that cannot take a packet (too large, not allowed under
     * MQTT 3.1.1) says so by closing. One on the wire is a refusal of that one.
     */
    readonly closedAfterPublish?: { onWire: number; reasonCode?: number },
  ) {
    super(message);
    this.name = 'PublishUnknownError';
  }
}
