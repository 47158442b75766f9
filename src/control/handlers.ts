import type { Logger } from '../util/logger.js';
import { RateLimiter } from '../util/rate-limit.js';
import type { DeviceStatus } from '../status/device-status.js';
import type { SyncReport } from '../sync/sync-loop.js';
import type { ControlHandlers } from './server.js';
import { FLAG_CLOCK_SUSPECT, manualReadingProblems, type Tick } from '../sensors/reading.js';
import { CLOCK_FLOOR_MS } from '../version.js';

export interface HandlerParts {
  status: Pick<DeviceStatus, 'live' | 'linkView'>;
  mode: { readonly offlineByChoice: boolean; set(online: boolean): Promise<void> };
  store: { countPending(): number; requeue(ids?: readonly string[]): number; logEvent(type: string, details: Record<string, unknown>): void };
  sync: { syncNow(timeoutMs: number, skipBackoff: boolean): Promise<SyncReport>; rewind(): void; nudge(): void };
  link: { readonly connected: boolean; readonly lastError?: string; connectNow(): void };
  /** where a reading typed by an operator goes: the sampler's sink (the storage keeper) */
  readings: { appendTicks(ticks: readonly Tick[]): void };
  now?: () => number;
}

/**
 * `edge-sensor sync`: requests that come while one runs share its report. Skipping the backoff is
 * rate-limited (3 at once, then one every 10 s): a flood of requests would otherwise be a flood of
 * broker connections. Past the limit a request waits for the round as it comes.
 */
export class SyncRequests {
  private running?: Promise<SyncReport>;
  private readonly forced = new RateLimiter(3, 10_000);

  constructor(private readonly parts: Pick<HandlerParts, 'mode' | 'store' | 'sync' | 'link'>) {}

  request(timeoutMs: number): Promise<SyncReport> {
    this.running ??= this.run(timeoutMs).finally(() => (this.running = undefined));
    return this.running;
  }

  private async run(timeoutMs: number): Promise<SyncReport> {
    const { mode, store, sync, link } = this.parts;
    if (mode.offlineByChoice) {
      return { ok: false, ackedRows: 0, ackedBatches: 0, pendingLeft: store.countPending(), reason: 'offline by choice (run edge-sensor online first)' };
    }
    const forced = this.forced.take();
    if (forced) link.connectNow();
    const report = await sync.syncNow(timeoutMs, forced);
    if (!forced) report.rateLimited = true;
    if (!report.ok && !link.connected && link.lastError) report.reason = `cannot reach broker: ${link.lastError}`;
    report.pendingLeft = store.countPending();
    return report;
  }
}

/** What the control socket's commands do in the running daemon; the demo calls them in-process. */
export function controlHandlers(parts: HandlerParts, log: Logger) {
  const { status, mode, store, sync } = parts;
  const syncs = new SyncRequests(parts);
  const setMode = async (online: boolean) => {
    await mode.set(online);
    return { link: status.linkView() };
  };
  return {
    ping: () => {
      const { pid, version, link, uptimeS } = status.live();
      return { pid, version, link, uptimeS };
    },
    online: () => setMode(true),
    offline: () => setMode(false),
    sync: (a: { timeoutMs?: number }) => syncs.request(a.timeoutMs ?? 10_000),
    /** parked rows back to pending (all, or by id) */
    requeue: (a: { ids?: string[] }) => {
      const n = store.requeue(a.ids);
      if (n > 0) {
        store.logEvent('rows_requeued', { rows: n, ids: a.ids?.slice(0, 20) });
        log.info({ rows: n }, 'parked rows requeued');
        sync.rewind();
      }
      return { requeued: n };
    },
    status: () => status.live(),
    /** a manual reading, by the rules of the CLI's record */
    record: (a: { amount: unknown; sensor?: unknown; unit?: unknown; description?: unknown }) => {
      const reading = { sensor: a.sensor ?? 'manual', value: a.amount, unit: a.unit ?? null, description: a.description ?? null };
      const problems = manualReadingProblems(reading);
      if (problems.length > 0) throw new Error(problems.map((p) => `${p.field} ${p.message}`).join('; '));
      const r = reading as { sensor: string; value: number; unit: string | null; description: string | null };
      const t = (parts.now ?? Date.now)();
      parts.readings.appendTicks([{ tsMs: t, flags: t < CLOCK_FLOOR_MS ? FLAG_CLOCK_SUSPECT : 0, readings: [r] }]);
      log.info({ sensor: r.sensor, value: r.value }, 'manual reading recorded');
      return { recorded: { sensor: r.sensor, value: r.value, unit: r.unit, ts: new Date(t).toISOString() } };
    },
    nudge: () => {
      sync.nudge();
      return {};
    },
  } satisfies ControlHandlers;
}

export type DaemonCommands = ReturnType<typeof controlHandlers>;
