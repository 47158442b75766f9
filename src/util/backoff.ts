/**
 * Exponential backoff with full jitter: try n (from 0) waits a random time, uniform between
 * initialMs and a cap that doubles per try, min(maxMs, initialMs * 2^(n+1)). Every delay is random,
 * the first included, so a fleet that lost its broker at the same moment does not come back in
 * step; none is shorter than initialMs, none longer than maxMs.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
  ) {}

  get attempts(): number {
    return this.attempt;
  }

  /** The upper bound of the next delay. */
  private cap(): number {
    return Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt + 1, 40));
  }

  /** The delay before the next try; counts one more attempt. */
  next(): number {
    const cap = this.cap();
    this.attempt++;
    return Math.round(this.initialMs + this.random() * (cap - this.initialMs));
  }

  /** A first quick retry after a working connection was lost: random in [0, initialMs]. */
  first(): number {
    return Math.round(this.random() * this.initialMs);
  }

  reset(): void {
    this.attempt = 0;
  }
}
