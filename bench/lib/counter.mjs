// The consumer side of every drain: subscribes to the readings topic and marks every reading's
// seq as seen, so a run only counts as done when every reading reached the broker and came out.
import mqtt from 'mqtt';
import { gunzipSync } from 'node:zlib';

export class ReadingCounter {
  /** seqs 1..maxSeq are expected; anything else is counted as foreign */
  constructor(maxSeq) {
    this.seen = new Uint8Array(maxSeq + 2);
    this.maxSeq = maxSeq;
    this.unique = 0;
    this.readings = 0;
    this.messages = 0;
    this.payloadBytes = 0;
    this.bad = 0;
    this.firstAt = undefined;
    this.doneAt = undefined;
    this.waiters = [];
    this.expect = Infinity;
  }

  static async start(url, topic, maxSeq) {
    const c = new ReadingCounter(maxSeq);
    c.client = mqtt.connect(url, { clientId: `bench-counter-${process.pid}-${Math.random().toString(36).slice(2, 7)}`, clean: true, protocolVersion: 5, reconnectPeriod: 0 });
    c.client.on('error', () => {});
    c.client.on('message', (_t, buf, packet) => c.onMessage(buf, packet));
    await new Promise((resolve, reject) => {
      c.client.once('connect', resolve);
      c.client.once('error', reject);
    });
    await c.client.subscribeAsync(topic, { qos: 1 });
    return c;
  }

  onMessage(buf, packet) {
    this.firstAt ??= performance.now();
    this.messages++;
    this.payloadBytes += buf.length;
    let m;
    try {
      const gz = packet.properties?.contentType === 'application/json+gzip';
      m = JSON.parse((gz ? gunzipSync(buf) : buf).toString());
    } catch {
      this.bad++;
      return;
    }
    const rs = m.readings ?? [m];
    for (const r of rs) {
      this.readings++;
      const s = r.seq;
      if (Number.isInteger(s) && s >= 1 && s <= this.maxSeq) {
        if (this.seen[s] === 0) {
          this.seen[s] = 1;
          this.unique++;
        }
      } else this.bad++;
    }
    if (this.unique >= this.expect && this.doneAt === undefined) {
      this.doneAt = performance.now();
      for (const w of this.waiters) w();
      this.waiters = [];
    }
  }

  /** Resets the ledger and resolves when `n` distinct readings have arrived. */
  expectReadings(n) {
    this.seen.fill(0);
    this.unique = this.readings = this.messages = this.payloadBytes = this.bad = 0;
    this.firstAt = this.doneAt = undefined;
    this.expect = n;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  get duplicates() {
    return this.readings - this.unique;
  }

  async stop() {
    await this.client.endAsync(true);
  }
}
