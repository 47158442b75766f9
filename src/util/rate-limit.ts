/**
 * A token bucket: `burst` actions at once, then one per `perMs`. What a remote or local client can
 * trigger (forced syncs, resends, commands) goes through one, so that a flood cannot turn into a
 * flood of broker connections or uplink traffic.
 */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly burst: number,
    private readonly perMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = burst;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + (t - this.last) / this.perMs);
    this.last = t;
  }

  /** Takes `n` tokens if there are enough; false (and nothing taken) otherwise. */
  take(n = 1): boolean {
    this.refill();
    if (this.tokens < n) return false;
    this.tokens -= n;
    return true;
  }

  /** Whole tokens there are now (what a caller that takes a variable amount may use at most). */
  available(): number {
    this.refill();
    return Math.floor(this.tokens);
  }
}
