/**
 * The period in seconds of a six-field schedule that fires every N seconds ("* * * * * *",
 * "*\/5 * * * * *"), where N divides 60 so the ticks fall on the same seconds of every minute;
 * undefined for any other schedule (those stay with node-cron).
 */
export function periodicSeconds(schedule: string): number | undefined {
  const f = schedule.trim().split(/\s+/);
  if (f.length !== 6 || f.slice(1).some((x) => x !== '*')) return undefined;
  if (f[0] === '*') return 1;
  const m = /^\*\/(\d{1,2})$/.exec(f[0]);
  const n = m ? Number(m[1]) : 0;
  return n >= 1 && 60 % n === 0 ? n : undefined;
}

export interface PeriodicEntry {
  period: number;
  fire: () => void;
}

/** node-cron's tolerance: a tick more than this late is missed, not run late */
const LATE_TOLERANCE_MS = 1000;

/**
 * One timer for every sensor on a seconds-period schedule: it wakes at the next whole second at
 * which any of them is due and fires all due sensors in the same turn (one transaction). Not
 * node-cron for these: its runs cost far more CPU (docs/benchmarks.md, "node-cron"). Whole seconds
 * in UTC are whole seconds in local time, so the ticks fall where node-cron would put them.
 */
export class PeriodicClock<E extends PeriodicEntry = PeriodicEntry> {
  private timer?: NodeJS.Timeout;
  private armedSlot = 0;
  private lastSlot = -1;
  private running = false;

  constructor(
    private readonly entries: readonly E[],
    private readonly now: () => number,
    /** called with the entries of a tick that came too late (the event loop was blocked, the clock jumped) */
    private readonly onMissed: (entries: E[]) => void = () => {},
  ) {}

  start(): void {
    this.running = true;
    this.arm(this.now());
  }

  stop(): void {
    this.running = false;
    clearTimeout(this.timer);
  }

  private due(slot: number): E[] {
    return this.entries.filter((e) => slot % e.period === 0);
  }

  private arm(nowMs: number): void {
    if (!this.running || this.entries.length === 0) return;
    let slot = Math.max(Math.floor(nowMs / 1000), this.lastSlot) + 1;
    // every period divides 60: some entry is due within a minute
    while (this.due(slot).length === 0) slot++;
    this.armedSlot = slot;
    this.timer = setTimeout(() => this.wake(), slot * 1000 - nowMs);
  }

  private wake(): void {
    const nowMs = this.now();
    const slotMs = this.armedSlot * 1000;
    if (nowMs < slotMs - LATE_TOLERANCE_MS) {
      // the wall clock went back: plan again from the new time rather than wait for the old one
      this.lastSlot = -1;
      this.arm(nowMs);
      return;
    }
    if (nowMs < slotMs) {
      // a timer may fire a little before the wall clock shows the second
      this.timer = setTimeout(() => this.wake(), slotMs - nowMs);
      return;
    }
    const due = this.due(this.armedSlot);
    this.lastSlot = this.armedSlot;
    if (nowMs - slotMs <= LATE_TOLERANCE_MS) for (const e of due) e.fire();
    else this.onMissed(due);
    this.arm(nowMs);
  }
}
