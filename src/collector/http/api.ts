import type { CollectorConfig } from '../config.js';
import { fleetRows, troubles, type FleetRow } from '../fleet-report.js';
import type { PgStore } from '../pg/store.js';
import type { Bucket } from '../pg/series.js';

/** What the API reads: the store's read side only (the page never writes). */
export type FleetQueries = Pick<PgStore, 'fleet' | 'gaps' | 'sensors' | 'series' | 'gapBands' | 'backlog'>;

export type Thresholds = CollectorConfig['http']['trouble'];

/** A request the API refuses, with the status to answer. */
export class ApiError extends Error {
  constructor(
    readonly status: 400 | 404,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** A chart gets about this many points, whatever the window. */
const TARGET_POINTS = 300;
const MAX_WINDOW_MS = 400 * 86_400_000;
// strides a person reads at a glance; the smallest one that keeps a window near TARGET_POINTS
const STRIDES = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400].map((s) => s * 1000);

export function bucketFor(windowMs: number): number {
  const want = windowMs / TARGET_POINTS;
  return STRIDES.find((s) => s >= want) ?? Math.ceil(want / 86_400_000) * 86_400_000;
}

/**
 * Buckets with a null row wherever the time to the next one is well past the series' usual spacing
 * (or the bucket), so that a chart draws a hole there instead of a line across it.
 */
export function withBreaks(points: Bucket[], bucketMs: number): Bucket[] {
  if (points.length < 2) return points;
  const steps = points.slice(1).map((p, i) => p[0] - points[i][0]).sort((a, b) => a - b);
  const usual = Math.max(bucketMs, steps[Math.floor(steps.length / 2)]);
  const out: Bucket[] = [points[0]];
  for (let i = 1; i < points.length; i++) {
    if (points[i][0] - points[i - 1][0] > 2.5 * usual) out.push([points[i - 1][0] + bucketMs, null, null, null, 0]);
    out.push(points[i]);
  }
  return out;
}

type Row = FleetRow & { trouble: string[] };

/** The JSON API under the page. Every number of a fleet row is `edge-sensor fleet --json`'s (the same function). */
export class FleetApi {
  constructor(
    private readonly q: FleetQueries,
    private readonly thresholds: Thresholds,
  ) {}

  async devices(): Promise<{ generatedAt: string; thresholds: Thresholds; devices: Row[]; rejectedMessages: Record<string, number> }> {
    const s = await this.q.fleet();
    return {
      generatedAt: s.now.toISOString(),
      thresholds: this.thresholds,
      devices: fleetRows(s).map((r) => ({ ...r, trouble: troubles(r, this.thresholds) })),
      // as fleet --json: messages that could not be stored, by reason (device or not)
      rejectedMessages: Object.fromEntries(s.rejected.map((r) => [r.reason, r.count])),
    };
  }

  async device(id: string) {
    const [fleet, sensors, gaps] = await Promise.all([this.q.fleet(), this.q.sensors(id), this.q.gaps(id, 1000)]);
    const row = fleetRows(fleet).find((r) => r.device === id);
    if (!row) throw new ApiError(404, 'no such device');
    return {
      generatedAt: fleet.now.toISOString(),
      device: { ...row, trouble: troubles(row, this.thresholds) },
      sensors: sensors.map((s) => ({ ...s, newestTs: s.newestTs.toISOString() })),
      gaps: gaps.gaps.map((g) => ({ from: g.from, to: g.to, readings: g.to - g.from + 1, state: g.state, reason: g.reason, openedAt: g.openedAt.toISOString(), closedAt: g.closedAt?.toISOString() ?? null })),
      gapsTruncated: gaps.truncated,
    };
  }

  async series(id: string, params: URLSearchParams) {
    const sensor = params.get('sensor');
    if (!sensor || sensor.length > 256) throw new ApiError(400, 'expected ?sensor=NAME (at most 256 characters)');
    const { fromMs, toMs } = window(params);
    const bucketMs = bucketFor(toMs - fromMs);
    const [points, bands] = await Promise.all([this.q.series({ device: id, sensor, fromMs, toMs, bucketMs }), this.q.gapBands(id, fromMs, toMs)]);
    return { device: id, sensor, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), bucketMs, points: withBreaks(points, bucketMs), gaps: bands };
  }

  async backlog(id: string, params: URLSearchParams) {
    const { fromMs, toMs } = window(params);
    const bucketMs = bucketFor(toMs - fromMs);
    const points = await this.q.backlog({ device: id, fromMs, toMs, bucketMs });
    return { device: id, from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), bucketMs, points };
  }
}

/** from/to as ISO times or ms since the epoch; default the last 24 hours. */
function window(params: URLSearchParams): { fromMs: number; toMs: number } {
  const time = (name: string, dflt: number) => {
    const v = params.get(name);
    if (v === null || v === '') return dflt;
    const ms = /^\d{1,15}$/.test(v) ? Number(v) : Date.parse(v);
    if (!Number.isFinite(ms)) throw new ApiError(400, `expected ?${name}= as an ISO time or milliseconds since 1970`);
    return ms;
  };
  const toMs = time('to', Date.now());
  const fromMs = time('from', toMs - 86_400_000);
  if (toMs <= fromMs || toMs - fromMs > MAX_WINDOW_MS) throw new ApiError(400, 'expected from < to, at most 400 days apart');
  return { fromMs, toMs };
}
