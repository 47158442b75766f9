import type { PendingRow } from '../store/store.js';

/** Room for the fixed header, topic, packet id and properties beside the payload. */
const PACKET_OVERHEAD = 64;

/**
 * How large a readings message may be: under the broker's Maximum Packet Size (MQTT 5 CONNACK), and
 * under a limit learnt from a broker that announces none but closes the connection on a message it
 * cannot take (halved at each such close, never below the largest message it acknowledged).
 */
export class PacketBudget {
  /** rows per batch that fit, once a split was needed: the next take reads no rows only to cut them */
  private fitRows = Infinity;
  private largestAckedBytes = 0;
  private learnt = Infinity;

  /** Another connection: maybe another broker, or another limit. */
  reset(): void {
    this.fitRows = Infinity;
  }

  /** How many rows the next batch takes at most. */
  rowsFor(batchSize: number): number {
    return Math.min(batchSize, this.fitRows);
  }

  acked(bytes: number): void {
    this.largestAckedBytes = Math.max(this.largestAckedBytes, bytes);
  }

  /**
   * The broker closed the connection right after this message went out alone. Larger than anything
   * it acknowledged, it is taken as too large: returns the limit learnt. Otherwise undefined.
   */
  closedOn(bytes: number): number | undefined {
    if (bytes <= this.largestAckedBytes) return undefined;
    this.learnt = Math.max(this.largestAckedBytes, Math.floor(bytes / 2));
    this.fitRows = Infinity;
    return this.learnt;
  }

  /**
   * The longest prefix of `all` whose message fits (all of it, usually), encoded; the rest waits for
   * the next batch, so a split never pushes the window past its limit. `tooLarge` says why a single
   * reading can never fit: sending it would only make the broker drop the connection.
   */
  fit<M extends { payload: Buffer }>(
    all: readonly PendingRow[],
    encode: (rows: readonly PendingRow[]) => M,
    maximumPacketSize: number | undefined,
    topicLength: number,
  ): { rows: readonly PendingRow[]; message: M; tooLarge?: string } {
    let rows = all;
    let message = encode(rows);
    const max = maximumPacketSize;
    const budget = Math.min(max !== undefined ? max - topicLength - PACKET_OVERHEAD : Infinity, this.learnt);
    if (budget === Infinity) return { rows, message };
    while (message.payload.length > budget && rows.length > 1) {
      const n = Math.max(1, Math.min(rows.length - 1, Math.floor((rows.length * budget * 0.95) / message.payload.length)));
      rows = rows.slice(0, n);
      message = encode(rows);
    }
    if (message.payload.length > budget) {
      const limit = max !== undefined && budget < this.learnt ? `the broker takes at most ${max} per packet` : `more than the ${this.learnt} bytes taken as its limit since it closed the connection on a larger message`;
      return { rows, message, tooLarge: `too large for the broker: ${message.payload.length} bytes alone, ${limit}` };
    }
    // by the rows' average size, so that one large row does not shrink every later batch
    if (rows.length < all.length) this.fitRows = Math.max(1, Math.floor((rows.length * budget) / message.payload.length));
    return { rows, message };
  }
}
