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

/** Sorts a publish error into "the broker refused it" and "nobody knows". */
export function classifyPublishError(err: Error & { code?: number | string }, stillConnected: boolean): Error {
  if (typeof err.code === 'number' && err.code >= 0x80) {
    return new PublishRejectedError(`broker refused the publish: ${err.message} (reason code 0x${err.code.toString(16)})`, err.code);
  }
  if (!stillConnected || /clos|disconnect|offline|connection|ECONN|EPIPE|ETIMEDOUT/i.test(err.message)) {
    return new PublishUnknownError(`publish interrupted: ${err.message}`, 'connection-lost');
  }
  // the client itself refused to send it (e.g. larger than the broker's Maximum Packet Size)
  return new PublishRejectedError(`publish refused: ${err.message}`, typeof err.code === 'number' ? err.code : undefined);
}
