import { describe, expect, it } from 'vitest';
import { mergeRanges, planGaps, runsOf, type GapInput, type GapRow } from '../../src/collector/gaps.js';

const T0 = 1_000_000;
const base = (o: Partial<GapInput>): GapInput => ({ accounted: 0, gaps: [], stored: [], dropped: [], dropReason: null, nowMs: T0, reorderWindowMs: 5000, ...o });
const seqs = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const brief = (p: ReturnType<typeof planGaps>) => p.insert.map((g) => [g.from, g.to, g.state]);

describe('gap planning', () => {
  it('runs and merged ranges', () => {
    expect(runsOf([1, 2, 3, 5, 7, 8])).toEqual([[1, 3], [5, 5], [7, 8]]);
    expect(mergeRanges([[5, 9], [1, 2], [3, 4], [20, 30], [8, 12]])).toEqual([[1, 12], [20, 30]]);
  });

  it('in-order readings open nothing; a device first seen at seq N has [1, N-1] to explain', () => {
    expect(planGaps(base({ stored: seqs(1, 500) }))).toMatchObject({ accounted: 500, insert: [], deleteIds: [] });
    const p = planGaps(base({ stored: seqs(40, 60) }));
    expect(p.accounted).toBe(60);
    expect(brief(p)).toEqual([[1, 39, 'open']]);
  });

  it('holes inside and before a batch open gaps', () => {
    const p = planGaps(base({ accounted: 10, stored: [13, 14, 20, 21] }));
    expect(brief(p)).toEqual([[11, 12, 'open'], [15, 19, 'open']]);
    expect(p.accounted).toBe(21);
  });

  it('late readings close the gap they fall in; a quick fill leaves no record, a late one a filled one', () => {
    const gap: GapRow = { id: '7', from: 11, to: 20, state: 'open', openedAtMs: T0 - 1000, reason: null };
    const quick = planGaps(base({ accounted: 30, gaps: [gap], stored: [11, 12, 15] }));
    expect(quick.deleteIds).toEqual(['7']);
    expect(brief(quick)).toEqual([[13, 14, 'open'], [16, 20, 'open']]);
    expect(quick.insert.every((g) => g.openedAtMs === T0 - 1000)).toBe(true);
    expect(quick.filledNow).toBe(3);

    const old = { ...gap, openedAtMs: T0 - 60_000 };
    const late = planGaps(base({ accounted: 30, gaps: [old], stored: seqs(11, 20) }));
    expect(brief(late)).toEqual([[11, 20, 'filled']]);
    expect(late.insert[0].closedAtMs).toBe(T0);
    expect(late.accounted).toBe(30);
  });

  it('announced drops: open seqs become dropped, beyond the accounted a dropped gap; stored seqs are never dropped', () => {
    const gap: GapRow = { id: '1', from: 11, to: 20, state: 'open', openedAtMs: T0 - 60_000, reason: null };
    const p = planGaps(base({ accounted: 30, gaps: [gap], dropped: [[5, 15], [35, 40]], dropReason: 'database cap' }));
    expect(brief(p)).toEqual([[11, 15, 'dropped'], [16, 20, 'open'], [31, 34, 'open'], [35, 40, 'dropped']]);
    expect(p.droppedNow).toBe(5 + 6);
    expect(p.accounted).toBe(40);
    expect(p.insert.find((g) => g.from === 35)?.reason).toBe('database cap');
  });

  it('readings and a drop of the same transaction: the readings win, the rest is dropped', () => {
    const p = planGaps(base({ accounted: 10, stored: [11, 12, 20], dropped: [[11, 19]] }));
    expect(brief(p)).toEqual([[13, 19, 'dropped']]);
    expect(p.droppedNow).toBe(7);
  });

  it('a dropped range that arrives after all is recorded as filled', () => {
    const gap: GapRow = { id: '3', from: 5, to: 9, state: 'dropped', openedAtMs: T0 - 1, reason: 'database cap' };
    const p = planGaps(base({ accounted: 9, gaps: [gap], stored: [7] }));
    expect(brief(p)).toEqual([[5, 6, 'dropped'], [7, 7, 'filled'], [8, 9, 'dropped']]);
  });

  it('many late runs over many gaps in one pass', () => {
    const gaps: GapRow[] = Array.from({ length: 2000 }, (_, i) => ({ id: String(i), from: i * 10 + 1, to: i * 10 + 5, state: 'open', openedAtMs: T0 - 60_000, reason: null }));
    const stored = gaps.flatMap((g) => [g.from, g.to]);
    const t = performance.now();
    const p = planGaps(base({ accounted: 30_000, gaps, stored }));
    expect(performance.now() - t).toBeLessThan(500);
    expect(p.deleteIds).toHaveLength(2000);
    expect(p.insert.filter((g) => g.state === 'open')).toHaveLength(2000);
    expect(p.filledNow).toBe(4000);
  });
});
