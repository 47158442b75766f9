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
  ) {
    super(message);
    this.name = 'PublishUnknownError';
  }
}
