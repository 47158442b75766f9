import { describe, expect, it } from 'vitest';
import { gzipSync } from 'node:zlib';
import { decodeMessage, GZIP_CONTENT_TYPE, type Decoded } from '../../src/collector/decode.js';

const o = { topicPrefix: 'fleet/a', maxMessageBytes: 100_000, rejectedPayloadBytes: 64 };
const reading = (seq: number, extra: Record<string, unknown> = {}) => ({
  id: `0190a1b2-c3d4-7e5f-8a9b-${String(seq).padStart(12, '0')}`,
  seq,
  ts: '2026-11-26T10:00:00.123Z',
  sensor: 'sim',
  value: seq / 2,
  unit: 'C',
  ...extra,
});
const batch = (readings: unknown[], device = 'pi-1') => ({ device, batch: '5b0c0c7e-7a3a-4c4e-9d9e-1d2f3a4b5c6d', readings });
const dec = (topic: string, payload: unknown, contentType?: string): Decoded =>
  decodeMessage(topic, Buffer.isBuffer(payload) ? payload : Buffer.from(typeof payload === 'string' ? payload : JSON.stringify(payload)), contentType, o);
const reason = (d: Decoded) => (d.kind === 'rejected' ? d.reason : d.kind);

describe('decodeMessage', () => {
  it('takes the contract readings message, column by column, and the newest ts', () => {
    const d = dec('fleet/a/pi-1/readings', batch([reading(1), reading(2, { description: 'coffee', clock: 'unsynced', ts: '2026-11-26T11:00:00Z', value: null, unit: null })]));
    expect(d.kind).toBe('readings');
    if (d.kind !== 'readings') return;
    expect(d.device).toBe('pi-1');
    expect(d.readings.seq).toEqual([1, 2]);
    expect(d.readings.value).toEqual([0.5, null]);
    expect(d.readings.unit).toEqual(['C', null]);
    expect(d.readings.description).toEqual([null, 'coffee']);
    expect(d.readings.clockUnsynced).toEqual([false, true]);
    expect(d.newestTsMs).toBe(Date.parse('2026-11-26T11:00:00Z'));
    expect(d.topic).toBe('fleet/a/pi-1/readings');
  });

  it('understands gzip by content type and by its magic bytes (MQTT 3.1.1 has no content type)', () => {
    const gz = gzipSync(JSON.stringify(batch([reading(7)])));
    expect(reason(dec('fleet/a/pi-1/readings', gz, GZIP_CONTENT_TYPE))).toBe('readings');
    expect(reason(dec('fleet/a/pi-1/readings', gz))).toBe('readings');
    expect(reason(dec('fleet/a/pi-1/readings', Buffer.from([0x1f, 0x8b, 1, 2, 3])))).toBe('invalid-json');
  });

  it('rejects each kind of bad message with its reason, the payload cut to the configured size', () => {
    const big = JSON.stringify(batch(Array.from({ length: 2000 }, (_, i) => reading(i + 1))));
    const cases: Array<[string, unknown, string]> = [
      ['fleet/a/pi-1/readings', 'not json', 'invalid-json'],
      ['fleet/a/pi-1/readings', Buffer.from([0xff, 0xfe, 0x7b]), 'invalid-json'],
      ['fleet/a/pi-1/readings', '', 'invalid-json'],
      ['fleet/a/pi-1/readings', batch([reading(1)], 'intruder'), 'device-mismatch'],
      ['fleet/a/pi-1/readings', big, 'too-large'],
      ['fleet/a/pi-1/readings', { ...batch([reading(1)]), device: undefined }, 'contract'],
      ['fleet/a/pi-1/readings', batch([]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { id: 'nope' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(0)]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1.5)]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { ts: 'yesterday' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { ts: '0000-01-01T00:00:00Z' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { ts: '2026-02-31T00:00:00Z' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { value: '3' })]), 'contract'],
      ['fleet/a/pi-1/readings', '{"device":"pi-1","batch":"5b0c0c7e-7a3a-4c4e-9d9e-1d2f3a4b5c6d","readings":[{"id":"0190a1b2-c3d4-7e5f-8a9b-000000000001","seq":1,"ts":"2026-11-26T10:00:00Z","sensor":"s","value":1e400,"unit":null}]}', 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { sensor: '' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { sensor: 'a\u0000b' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(1, { clock: 'fast' })]), 'contract'],
      ['fleet/a/pi-1/readings', batch([reading(2), reading(1), reading(2)]), 'contract'],
      ['fleet/a/pi-1/readings', { ...batch([reading(1)]), batch: 7 }, 'contract'],
      ['fleet/a/pi-1/readings', [1, 2], 'contract'],
      ['fleet/a/pi-1/readings', 'null', 'contract'],
      ['fleet/a/pi-1/readings', '42', 'contract'],
      ['fleet/a/pi-1/readings', { ...batch([reading(1)]), readings: { length: 1, 0: reading(1) } }, 'contract'],
      ['fleet/a/pi-1/readings', batch([null, [], 'x']), 'contract'],
      ['fleet/a/pi-1/dropped', { device: 'pi-1', ranges: [[5, 3]] }, 'contract'],
      ['fleet/a/pi-1/dropped', { device: 'pi-1', ranges: 'all' }, 'contract'],
      ['fleet/a/pi-1/dropped', { device: 'other', ranges: [[1, 2]] }, 'device-mismatch'],
      ['fleet/a/pi-1/status', { device: 'other', state: 'online' }, 'device-mismatch'],
      ['fleet/a/pi 1/readings', batch([reading(1)], 'pi 1'), 'contract'],
      ['fleet/a/pi-1/extra/readings', batch([reading(1)]), 'contract'],
      ['elsewhere/pi-1/readings', batch([reading(1)]), 'contract'],
    ];
    for (const [topic, payload, want] of cases) {
      const d = dec(topic, payload);
      expect(reason(d), `${topic} ${String(payload).slice(0, 80)}`).toBe(want);
      if (d.kind === 'rejected') {
        expect(d.topic).toBe(topic);
        expect(d.payload.length).toBeLessThanOrEqual(64);
        expect(d.detail.length).toBeGreaterThan(0);
      }
    }
  });

  it('a gzip bomb is too large once decompressed, not a crash', () => {
    const bomb = gzipSync(Buffer.alloc(5_000_000, 0x20));
    expect(bomb.length).toBeLessThan(o.maxMessageBytes);
    expect(reason(dec('fleet/a/pi-1/readings', bomb))).toBe('too-large');
  });

  it('takes a status (an empty one clears the retained message: ignored) and a drop announcement', () => {
    const s = dec('fleet/a/pi-1/status', { device: 'pi-1', state: 'offline', reason: 'connection lost', pending: 3 });
    expect(s).toMatchObject({ kind: 'status', device: 'pi-1', online: false, ts: null });
    expect(dec('fleet/a/pi-1/status', Buffer.alloc(0)).kind).toBe('ignored');
    const d = dec('fleet/a/pi-1/dropped', { device: 'pi-1', ranges: [[10, 20], [30, 30]], count: 12, reasons: ['database cap'], ts: '2026-11-26T10:05:00.000Z' });
    expect(d).toMatchObject({ kind: 'dropped', ranges: [[10, 20], [30, 30]], reasons: ['database cap'] });
  });

  it('survives whatever JSON it is given', () => {
    const values = ['{"__proto__":{"x":1},"device":"pi-1"}', '{"readings":[{"seq":{"valueOf":1}}],"device":"pi-1","batch":"5b0c0c7e-7a3a-4c4e-9d9e-1d2f3a4b5c6d"}', '[[[[[]]]]]', 'true', '"str"', '{"device":["pi-1"]}', '{"device":"pi-1","ranges":[[1,9007199254740993]]}'];
    for (const v of values) for (const kind of ['readings', 'status', 'dropped']) expect(() => dec(`fleet/a/pi-1/${kind}`, v)).not.toThrow();
  });
});
