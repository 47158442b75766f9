/**
 * Exponential backoff with jitter: attempt n waits a random time between initialMs and
 * min(maxMs, initialMs * 2^n). Randomness spreads a fleet's reconnects after a broker outage.
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

  /** The delay before the next try; counts one more attempt. */
  next(): number {
    const cap = Math.min(this.maxMs, this.initialMs * 2 ** Math.min(this.attempt, 40));
    this.attempt++;
    return Math.round(this.initialMs + this.random() * (cap - this.initialMs));
  }

  reset(): void {
    this.attempt = 0;
  }
}
