/**
 * Gap bookkeeping for one device, as pure range arithmetic (the store runs it inside the
 * transaction that holds the device's row lock, so several collectors never plan on stale state).
 *
 * The invariant it keeps: every seq from 1 to `accounted` is either stored in `readings` or
 * inside an `open` or `dropped` gap. A device's seq starts at 1, so the first reading seen with
 * seq N opens [1, N-1]: readings the collector never saw are a hole to explain (they may still come:
 * a backlog, another collector of the share group), never assumed absent.
 */

export type GapState = 'open' | 'dropped' | 'filled';

/** A gap row as the store has it (only open and dropped ones are ever planned on). */
export interface GapRow {
  id: string;
  from: number;
  to: number;
  state: 'open' | 'dropped';
  openedAtMs: number;
  reason: string | null;
}

export interface GapPiece {
  from: number;
  to: number;
  state: GapState;
  openedAtMs: number;
  closedAtMs: number | null;
  reason: string | null;
}

export interface GapInput {
  /** the device's highest seq stored or announced dropped so far (0 for a new device) */
  accounted: number;
  /** the device's open and dropped gaps that overlap any seq below in `stored` or `dropped` */
  gaps: readonly GapRow[];
  /** seqs stored by this transaction (newly inserted), ascending, no repeats */
  stored: readonly number[];
  /** ranges the device announced dropped */
  dropped: ReadonlyArray<readonly [number, number]>;
  dropReason: string | null;
  nowMs: number;
  /** a gap filled within this long of opening was reordering, not a hole: no 'filled' record */
  reorderWindowMs: number;
}

export interface GapPlan {
  accounted: number;
  /** gap rows replaced by their pieces */
  deleteIds: string[];
  insert: GapPiece[];
  /** readings newly explained as dropped by the device */
  droppedNow: number;
  /** stored readings that closed (part of) a gap */
  filledNow: number;
}

interface Piece extends GapPiece {
  orig: string | null;
}

/** Consecutive seqs as [from, to] runs. */
export function runsOf(seqs: readonly number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const s of seqs) {
    const last = out[out.length - 1];
    if (last && s === last[1] + 1) last[1] = s;
    else out.push([s, s]);
  }
  return out;
}

/** Ranges sorted and merged where they overlap or touch. */
export function mergeRanges(ranges: ReadonlyArray<readonly [number, number]>): Array<[number, number]> {
  const sorted = ranges.map(([a, b]) => [a, b] as [number, number]).sort((x, y) => x[0] - y[0]);
  const out: Array<[number, number]> = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

export function planGaps(input: GapInput): GapPlan {
  const now = input.nowMs;
  let accounted = input.accounted;
  let pieces: Piece[] = input.gaps.map((g) => ({ ...g, closedAtMs: null, orig: g.id })).sort((a, b) => a.from - b.from);
  const touched = new Set<string>();
  let droppedNow = 0;
  let filledNow = 0;

  // 1. late readings close the gaps they fall in
  const late = input.stored.filter((s) => s <= accounted);
  if (late.length > 0) {
    pieces = sweep(pieces, runsOf(late), (p) => p.state !== 'filled', (p, n) => {
      filledNow += n;
      // an open gap filled this soon was a batch overtaking another: no history worth keeping
      const quick = p.state === 'open' && now - p.openedAtMs < input.reorderWindowMs;
      return quick ? null : { state: 'filled', closedAtMs: now, reason: p.reason };
    }, touched);
  }

  // 2. readings above everything accounted for: the holes below them open
  for (const [a, b] of runsOf(input.stored.filter((s) => s > accounted))) {
    if (a > accounted + 1) pieces.push(newPiece(accounted + 1, a - 1, 'open', now, null));
    accounted = b;
  }

  // 3. announced drops: open seqs among them become dropped; beyond the accounted, a dropped gap
  for (const [a, b] of mergeRanges(input.dropped)) {
    if (a <= accounted) {
      pieces = sweep(pieces, [[a, Math.min(b, accounted)]], (p) => p.state === 'open', (_p, n) => {
        droppedNow += n;
        return { state: 'dropped', closedAtMs: now, reason: input.dropReason };
      }, touched);
    }
    if (b > accounted) {
      const start = Math.max(a, accounted + 1);
      if (start > accounted + 1) pieces.push(newPiece(accounted + 1, start - 1, 'open', now, null));
      pieces.push({ ...newPiece(start, b, 'dropped', now, input.dropReason), closedAtMs: now });
      droppedNow += b - start + 1;
      accounted = b;
    }
    pieces.sort((x, y) => x.from - y.from);
  }

  return {
    accounted,
    deleteIds: [...touched],
    insert: pieces.filter((p) => p.orig === null || touched.has(p.orig)).map(({ orig: _o, ...p }) => p),
    droppedNow,
    filledNow,
  };
}

function newPiece(from: number, to: number, state: GapState, now: number, reason: string | null): Piece {
  return { from, to, state, openedAtMs: now, closedAtMs: null, reason, orig: null };
}

/**
 * Cuts the parts of `ranges` (sorted, disjoint) out of the pieces (sorted, disjoint) that `applies`
 * to, in one pass over both; `change` says what each cut part becomes (null: it goes).
 */
function sweep(
  pieces: Piece[],
  ranges: ReadonlyArray<readonly [number, number]>,
  applies: (p: Piece) => boolean,
  change: (p: Piece, count: number) => Pick<GapPiece, 'state' | 'closedAtMs' | 'reason'> | null,
  touched: Set<string>,
): Piece[] {
  const out: Piece[] = [];
  let j = 0;
  for (const p of pieces) {
    while (j < ranges.length && ranges[j][1] < p.from) j++;
    if (!applies(p) || j >= ranges.length || ranges[j][0] > p.to) {
      out.push(p);
      continue;
    }
    let cur = p.from;
    let k = j;
    while (k < ranges.length && ranges[k][0] <= p.to) {
      const s = Math.max(ranges[k][0], p.from);
      const e = Math.min(ranges[k][1], p.to);
      if (s > cur) out.push({ ...p, from: cur, to: s - 1 });
      const c = change(p, e - s + 1);
      if (c) out.push({ ...p, ...c, from: s, to: e });
      cur = e + 1;
      if (ranges[k][1] > p.to) break; // the range goes on into the next piece
      k++;
    }
    if (cur <= p.to) out.push({ ...p, from: cur, to: p.to });
    if (p.orig !== null) touched.add(p.orig);
    j = k;
  }
  return out;
}
