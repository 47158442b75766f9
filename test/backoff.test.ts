import { describe, expect, it } from 'vitest';
import { Backoff } from '../src/util/backoff.js';

describe('backoff', () => {
  it('doubles its cap per try up to maxDelayMs, never below initialDelayMs, and starts over on reset', () => {
    const top = new Backoff(1000, 300_000, () => 0.999999);
    const caps = Array.from({ length: 12 }, () => top.next());
    expect(caps.slice(0, 9)).toEqual([2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000]);
    expect(caps.slice(9)).toEqual([300_000, 300_000, 300_000]);
    expect(top.attempts).toBe(12);
    top.reset();
    expect(top.attempts).toBe(0);
    expect(top.next()).toBe(2000);
    const bottom = new Backoff(1000, 300_000, () => 0);
    expect(Array.from({ length: 12 }, () => bottom.next()).every((d) => d === 1000)).toBe(true);
  });

  it('is random from the first try on: delays of one try spread over its whole range', () => {
    for (let attempt = 0; attempt < 5; attempt++) {
      const delays: number[] = [];
      for (let i = 0; i < 400; i++) {
        const b = new Backoff(1000, 300_000);
        for (let k = 0; k < attempt; k++) b.next();
        delays.push(b.next());
      }
      const lo = 1000;
      const hi = 1000 * 2 ** (attempt + 1);
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(lo);
      expect(Math.max(...delays)).toBeLessThanOrEqual(hi);
      // uniform: each quarter of the range gets a fair share (400 draws: ~100 expected per quarter)
      const quarter = (hi - lo) / 4;
      for (let q = 0; q < 4; q++) {
        const n = delays.filter((d) => d >= lo + q * quarter && d < lo + (q + 1) * quarter + (q === 3 ? 1 : 0)).length;
        expect(n).toBeGreaterThan(50);
      }
    }
  });

  it('a first retry after a lost connection is random within [0, initialDelayMs]', () => {
    const b = new Backoff(1000, 300_000);
    const firsts = Array.from({ length: 400 }, () => b.first());
    expect(Math.min(...firsts)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...firsts)).toBeLessThanOrEqual(1000);
    expect(firsts.filter((d) => d < 250).length).toBeGreaterThan(50);
    expect(firsts.filter((d) => d > 750).length).toBeGreaterThan(50);
    expect(b.attempts).toBe(0); // does not count as a try of the backoff
  });

  it('with maxDelayMs equal to initialDelayMs every delay is that value', () => {
    const b = new Backoff(500, 500);
    expect(Array.from({ length: 5 }, () => b.next())).toEqual([500, 500, 500, 500, 500]);
  });
});
