import type { SamplerStats } from '../sampler/sampler.js';
import type { StoreStats } from '../store/store.js';
import type { SyncStats } from '../sync/sync-loop.js';
import type { EndToEndView } from '../sync/end-to-end.js';
import { VERSION } from '../version.js';

/** The retained status message on {topicPrefix}/{deviceId}/status: the public contract. */
export interface StatusPayload {
  device: string;
  state: 'online' | 'offline';
  /** why offline: 'connection lost' (the last will), 'shutdown', 'offline by choice' */
  reason?: string;
  mode?: 'online' | 'offline-by-choice';
  pending?: number;
  oldestPendingAgeMs?: number | null;
  parked?: number;
  syncedTotal?: number;
  lostTotal?: number;
  lastAckAt?: string | null;
  dbBytes?: number;
  uptimeS?: number;
  version?: string;
  /** with sync.endToEnd: the collector's last word (every reading up to it stored), the highest seq the broker acknowledged, and readings in between */
  storedThrough?: number;
  syncedThrough?: number;
  unconfirmed?: number;
  ts: string;
}

/** Where the daemon stands with the broker, as `status` shows it. */
export type LinkView = 'online' | 'offline-by-choice' | 'unreachable' | 'connecting' | 'stopped';

/** What only the running daemon knows: the control socket's `status` (the CLI adds what the database says). */
export interface LiveStatus {
  pid: number;
  version: string;
  link: LinkView;
  lastError: string | null;
  uptimeS: number;
  inFlightBatches: number;
  window: number;
  unsavedLost?: number;
  /** rows acknowledged by the broker, still pending in the database (written with the next append) */
  ackedWaiting?: number;
  /** rows acknowledged by the broker, not yet in the database's synced_total */
  ackedUncounted?: number;
  acceptingReadings?: boolean;
  sync?: SyncStats;
  sampler?: SamplerStats;
  endToEnd?: EndToEndView;
}

/** The daemon's state as saved in the database, for `status` while the daemon is not running. */
export interface DaemonState {
  pid: number;
  startedAt: string;
  link: LinkView;
  lastError?: string;
  updatedAt: string;
}

/** Who the device's status is gathered from. */
export interface StatusSources {
  store: { stats(): StoreStats };
  link: { readonly connected: boolean; readonly state: string; readonly lastError?: string };
  mode: { readonly offlineByChoice: boolean };
  keeper: { lostTotal(): number; readonly unsaved: number; readonly acceptingReadings: boolean };
  sync: { readonly stats: SyncStats; readonly acks: { readonly waitingRows: number; readonly uncountedRows: number } };
  sampler: { readonly stats: SamplerStats };
  /** present with sync.endToEnd */
  endToEnd?: { view(): EndToEndView };
}

/**
 * The last will: the broker sends it when the connection dies, at a moment the device cannot know,
 * so it carries no `ts`, but when that connection began.
 */
export function willStatus(device: string, nowMs: number): Omit<StatusPayload, 'ts'> & { connectedAt: string } {
  return { device, state: 'offline', reason: 'connection lost', version: VERSION, connectedAt: new Date(nowMs).toISOString() };
}

/** The device's own status, in each form it is shown: the status topic, the CLI's live status, systemd's line, the saved state. */
export class DeviceStatus {
  private stopping = false;

  constructor(
    private readonly from: StatusSources,
    private readonly device: string,
    private readonly startedAt: number,
    private readonly now: () => number,
  ) {}

  /** From now on the link shows as 'stopped'. */
  markStopping(): void {
    this.stopping = true;
  }

  linkView(): LinkView {
    const { link, mode } = this.from;
    if (this.stopping) return 'stopped';
    if (mode.offlineByChoice) return 'offline-by-choice';
    if (link.state === 'connected') return 'online';
    if (link.lastError) return 'unreachable';
    return 'connecting';
  }

  uptimeS(): number {
    return Math.round((this.now() - this.startedAt) / 1000);
  }

  payload(): StatusPayload {
    const { store, link, mode, keeper, sync } = this.from;
    const st = store.stats();
    const now = this.now();
    // acknowledged rows not written down yet are synced for everyone who asks (AckBook)
    const { waitingRows, uncountedRows } = sync.acks;
    return {
      device: this.device,
      // offline by choice may keep a connection for remote commands: still offline for everyone else
      state: link.connected && !mode.offlineByChoice ? 'online' : 'offline',
      ...(mode.offlineByChoice ? { reason: 'offline by choice' } : {}),
      mode: mode.offlineByChoice ? 'offline-by-choice' : 'online',
      pending: Math.max(0, st.pending - waitingRows),
      oldestPendingAgeMs: st.oldestPendingTs ? Math.max(0, now - Date.parse(st.oldestPendingTs)) : null,
      parked: st.parked,
      syncedTotal: st.syncedTotal + uncountedRows,
      lostTotal: keeper.lostTotal(),
      lastAckAt: sync.stats.lastAckAt ? new Date(sync.stats.lastAckAt).toISOString() : null,
      dbBytes: st.fileBytes,
      uptimeS: this.uptimeS(),
      version: VERSION,
      ...this.from.endToEnd?.view(),
      ts: new Date(now).toISOString(),
    };
  }

  live(): LiveStatus {
    const { link, keeper, sync, sampler } = this.from;
    return {
      pid: process.pid,
      version: VERSION,
      link: this.linkView(),
      lastError: link.lastError ?? null,
      uptimeS: this.uptimeS(),
      inFlightBatches: sync.stats.inFlightBatches,
      window: sync.stats.window,
      unsavedLost: keeper.unsaved,
      ackedWaiting: sync.acks.waitingRows,
      ackedUncounted: sync.acks.uncountedRows,
      acceptingReadings: keeper.acceptingReadings,
      sync: sync.stats,
      sampler: sampler.stats,
      endToEnd: this.from.endToEnd?.view(),
    };
  }

  saved(): DaemonState {
    return {
      pid: process.pid,
      startedAt: new Date(this.startedAt).toISOString(),
      link: this.linkView(),
      lastError: this.from.link.lastError,
      updatedAt: new Date(this.now()).toISOString(),
    };
  }
}
