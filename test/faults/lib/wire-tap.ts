import mqttPacket from 'mqtt-packet';
import type { FaultProxy } from '../../helpers/proxy.js';

export interface AckedBatch {
  batch: string;
  firstSeq: number;
  lastSeq: number;
  /** when the PUBACK passed the proxy on its way to the daemon */
  at: number;
  reasonCode: number;
}

interface Connection {
  up: ReturnType<typeof mqttPacket.parser>;
  down: ReturnType<typeof mqttPacket.parser>;
  inFlight: Map<number, { batch: string; firstSeq: number; lastSeq: number }>;
}

/**
 * Reads the MQTT packets passing through the fault proxy: which readings batch each PUBLISH
 * carried and whether the broker sent a PUBACK for it. When a reading is missing at the
 * subscriber, this tells a broker that acknowledged and then lost it from a daemon that marked
 * it synced without an acknowledgement.
 */
export class WireTap {
  readonly acked: AckedBatch[] = [];
  private readonly connections = new Map<number, Connection>();

  /** the MQTT version the daemon speaks through the proxy (packets are parsed accordingly) */
  constructor(private readonly protocolVersion: 4 | 5 = 5) {}

  attach(proxy: FaultProxy): this {
    proxy.tap = (id, direction, data) => this.feed(id, direction, data);
    return this;
  }

  private connection(id: number): Connection {
    let c = this.connections.get(id);
    if (c) return c;
    const v = this.protocolVersion;
    const conn: Connection = { up: mqttPacket.parser({ protocolVersion: v }), down: mqttPacket.parser({ protocolVersion: v }), inFlight: new Map() };
    conn.up.on('packet', (p) => {
      if (p.cmd !== 'publish' || p.qos !== 1 || p.messageId === undefined) return;
      const batch = describeBatch(p.payload);
      if (batch) conn.inFlight.set(p.messageId, batch);
    });
    conn.down.on('packet', (p) => {
      if (p.cmd !== 'puback' || p.messageId === undefined) return;
      const b = conn.inFlight.get(p.messageId);
      if (!b) return;
      conn.inFlight.delete(p.messageId);
      this.acked.push({ ...b, at: Date.now(), reasonCode: p.reasonCode ?? 0 });
    });
    conn.up.on('error', () => {});
    conn.down.on('error', () => {});
    this.connections.set(id, conn);
    return conn;
  }

  private feed(id: number, direction: 'client' | 'server', data: Buffer): void {
    const c = this.connection(id);
    (direction === 'client' ? c.up : c.down).parse(data);
  }

  /** Readings batches published on the newest connection and not acknowledged yet. */
  inFlightNow(): number {
    let newest = 0;
    for (const id of this.connections.keys()) newest = Math.max(newest, id);
    return this.connections.get(newest)?.inFlight.size ?? 0;
  }

  /** The successful PUBACK of a batch whose seq range holds this seq, if the broker sent one. */
  ackFor(seq: number): AckedBatch | undefined {
    return this.acked.find((a) => a.reasonCode < 0x80 && a.firstSeq <= seq && seq <= a.lastSeq);
  }
}

/** `{"device":…,"batch":"…","readings":[{"id":…,"seq":N,…},…]}`: the batch id and its first and last seq, without parsing it all. */
function describeBatch(payload: Buffer | string): { batch: string; firstSeq: number; lastSeq: number } | undefined {
  const s = typeof payload === 'string' ? payload : payload.toString('utf8');
  const batch = /"batch":"([^"]+)"/.exec(s.slice(0, 200))?.[1];
  if (!batch) return undefined;
  const first = /"seq":(\d+)/.exec(s);
  const lastAt = s.lastIndexOf('"seq":');
  if (!first || lastAt < 0) return undefined;
  return { batch, firstSeq: Number(first[1]), lastSeq: parseInt(s.slice(lastAt + 6), 10) };
}
