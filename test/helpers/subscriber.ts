import { connect, type MqttClient } from 'mqtt';
import { gunzipSync } from 'node:zlib';
import type { WireBatch } from '../../src/sync/payload.js';

/**
 * A ledger at the consumer side: counts every reading id that reaches the broker.
 * A persistent session (clean false, session expiry) so nothing is missed across broker restarts.
 */
export class Ledger {
  client!: MqttClient;
  readonly counts = new Map<string, number>();
  readonly seqs: number[][] = [];
  readonly statuses: Array<Record<string, unknown>> = [];
  /** batch id → times its message arrived: a second arrival is the broker redelivering, not the daemon resending */
  readonly batches = new Map<string, number>();
  messages = 0;
  readings = 0;
  /** readings in messages that arrived again with the same batch id (broker → subscriber redelivery) */
  redeliveredReadings = 0;
  bad = 0;

  static async start(
    url: string,
    filter: string,
    opts: { protocolVersion?: 4 | 5; clientId?: string; statusFilter?: string; username?: string; password?: string } = {},
  ): Promise<Ledger> {
    const l = new Ledger();
    const v = opts.protocolVersion ?? 5;
    l.client = connect(url, {
      clientId: opts.clientId ?? `ledger-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
      clean: false,
      protocolVersion: v,
      ...(v === 5 ? { properties: { sessionExpiryInterval: 3600 } } : {}),
      reconnectPeriod: 200,
      username: opts.username,
      password: opts.password,
    });
    l.client.on('error', () => {});
    l.client.on('message', (topic, buf, packet) => {
      if (opts.statusFilter && topic.endsWith('/status')) {
        try {
          l.statuses.push({ ...JSON.parse(buf.toString()), _retain: packet.retain });
        } catch {
          l.bad++;
        }
        return;
      }
      l.messages++;
      try {
        const gz = packet.properties?.contentType === 'application/json+gzip';
        const m = JSON.parse((gz ? gunzipSync(buf) : buf).toString()) as WireBatch;
        l.seqs.push(m.readings.map((r) => r.seq));
        const seen = l.batches.get(m.batch) ?? 0;
        l.batches.set(m.batch, seen + 1);
        if (seen > 0) l.redeliveredReadings += m.readings.length;
        for (const r of m.readings) {
          l.readings++;
          l.counts.set(r.id, (l.counts.get(r.id) ?? 0) + 1);
        }
      } catch {
        l.bad++;
      }
    });
    await new Promise<void>((resolve, reject) => {
      l.client.once('connect', () => resolve());
      l.client.once('error', reject);
    });
    const filters = [filter, ...(opts.statusFilter ? [opts.statusFilter] : [])];
    await l.client.subscribeAsync(filters, { qos: 1 });
    return l;
  }

  get unique(): number {
    return this.counts.size;
  }

  get duplicates(): number {
    return this.readings - this.counts.size;
  }

  /** extra copies that came from the daemon sending rows again in a new batch (after an unknown outcome) */
  get resent(): number {
    return this.duplicates - this.redeliveredReadings;
  }

  has(id: string): boolean {
    return this.counts.has(id);
  }

  async stop(): Promise<void> {
    await this.client.endAsync();
  }
}
