import { connect, type IClientPublishOptions, type MqttClient } from 'mqtt';

export interface Seen {
  topic: string;
  text: string;
  retain: boolean;
  at: number;
  correlationData?: Buffer;
}

/** A test's MQTT 5 client: records every message on its filters, with when it came. */
export class Watcher {
  readonly seen: Seen[] = [];
  private constructor(readonly client: MqttClient) {}

  static async start(url: string, filters: string[] = []): Promise<Watcher> {
    const client = connect(url, { protocolVersion: 5, clientId: `w-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, clean: true, reconnectPeriod: 200 });
    const w = new Watcher(client);
    client.on('error', () => {});
    client.on('message', (topic, payload, packet) => w.seen.push({ topic, text: payload.toString(), retain: packet.retain, at: Date.now(), correlationData: packet.properties?.correlationData }));
    await new Promise<void>((resolve) => client.once('connect', () => resolve()));
    if (filters.length) await client.subscribeAsync(filters, { qos: 1 });
    return w;
  }

  /** the last message on a topic */
  last(topic: string): Seen | undefined {
    for (let i = this.seen.length - 1; i >= 0; i--) if (this.seen[i].topic === topic) return this.seen[i];
    return undefined;
  }

  on(topic: string): Seen[] {
    return this.seen.filter((s) => s.topic === topic);
  }

  async publish(topic: string, payload: string, opts: IClientPublishOptions = {}): Promise<void> {
    await this.client.publishAsync(topic, payload, { qos: 1, ...opts });
  }

  async stop(): Promise<void> {
    await this.client.endAsync(true);
  }
}
