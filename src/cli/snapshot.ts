import type { Store } from '../store/store.js';
import { Confirmations, STORED_THROUGH_KEY } from '../store/confirmations.js';
import type { LiveStatus } from '../status/device-status.js';
import { STATE_KEY } from '../status/saved-state.js';
import { savedOffline } from '../sync/online-mode.js';
import { formatBytes, formatDuration } from '../util/duration.js';

export type { LiveStatus };

export interface StatusSnapshot {
  database: { path: string; bytes: number };
  daemon: { running: boolean; pid?: number; uptimeS?: number; version?: string; link: string; lastError: string | null; inFlightBatches?: number };
  mode: 'online' | 'offline-by-choice';
  pending: number;
  parked: number;
  /** why rows are parked, oldest reason first */
  parkedReasons: Array<{ reason: string; rows: number; firstSeq: number; lastSeq: number }>;
  synced: number;
  oldestPendingTs: string | null;
  oldestPendingAgeMs: number | null;
  lastAckAt: string | null;
  lastError: { at: string; type: string; details: unknown } | null;
  retries: { pendingRowsRetried: number; maxRetryCount: number };
  lostTotal: number;
  droppedTotal: number;
  acceptingReadings: boolean;
  lastSeq: number;
  /** with sync.endToEnd (or once the collector answered): what it confirmed stored, and what the broker has that it has not */
  endToEnd?: { storedThrough: number; unconfirmed: number; syncedThrough?: number };
}

const ERROR_EVENTS = ['batch_rejected', 'batch_timeout', 'rows_parked', 'connect_failed', 'disconnected', 'readings_dropped', 'readings_lost', 'database_replaced'];

/**
 * Everything `edge-sensor status` shows, read from the database (works with the daemon stopped)
 * and completed by the live daemon when it answers.
 */
export function buildStatus(store: Store, live: LiveStatus | undefined, nowMs = Date.now()): StatusSnapshot {
  const st = store.stats();
  // batch_acked: one event per batch (before the AckBook); batches_acked: a summary per minute
  const lastAck = store.lastEvent(['batch_acked', 'batches_acked']);
  const loggedAckAt = (lastAck?.details as { lastAckAt?: unknown } | null | undefined)?.lastAckAt;
  const liveAckAt = live?.sync?.lastAckAt;
  const lastErr = store.lastEvent(ERROR_EVENTS);
  const retry = store.retryStats();
  const saved = parseJson(store.getConfig(STATE_KEY)) as { link?: string; lastError?: string } | undefined;
  const mode = savedOffline(store) ? 'offline-by-choice' : 'online';
  const losses = store.lossTotals();
  const daemon: StatusSnapshot['daemon'] = live
    ? { running: true, pid: live.pid, uptimeS: live.uptimeS, version: live.version, link: live.link, lastError: live.lastError, inFlightBatches: live.inFlightBatches }
    : { running: false, link: 'stopped', lastError: saved?.lastError ?? null };
  return {
    database: { path: store.path, bytes: st.fileBytes },
    daemon,
    mode,
    pending: Math.max(0, st.pending - (live?.ackedWaiting ?? 0)),
    parked: st.parked,
    parkedReasons: st.parked > 0 ? store.parkedByReason() : [],
    synced: st.syncedTotal + (live?.ackedUncounted ?? 0),
    oldestPendingTs: st.oldestPendingTs,
    oldestPendingAgeMs: st.oldestPendingTs ? Math.max(0, nowMs - Date.parse(st.oldestPendingTs)) : null,
    lastAckAt: liveAckAt ? new Date(liveAckAt).toISOString() : typeof loggedAckAt === 'string' ? loggedAckAt : (lastAck?.timestamp ?? null),
    lastError: lastErr ? { at: lastErr.timestamp, type: lastErr.event_type, details: lastErr.details } : null,
    retries: { pendingRowsRetried: retry.rows, maxRetryCount: retry.maxRetry },
    lostTotal: losses.lost + losses.dropped + (live?.unsavedLost ?? 0),
    droppedTotal: losses.dropped,
    acceptingReadings: live?.acceptingReadings ?? true,
    lastSeq: st.lastSeq,
    endToEnd: live?.endToEnd ?? confirmedFromDatabase(store),
  };
}

/** Without the daemon: from the database, once a collector has said anything. */
function confirmedFromDatabase(store: Store): StatusSnapshot['endToEnd'] {
  if (store.getConfig(STORED_THROUGH_KEY) === undefined) return undefined;
  const c = new Confirmations(store);
  const storedThrough = c.storedThrough();
  return { storedThrough, unconfirmed: c.unconfirmed(storedThrough) };
}

function parseJson(s: string | undefined): unknown {
  if (!s) return undefined;
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

const LINK_WORDS: Record<string, string> = {
  online: 'online (connected to the broker)',
  'offline-by-choice': 'offline by choice (edge-sensor online to resume)',
  unreachable: 'unable to reach the broker',
  connecting: 'connecting to the broker',
  stopped: 'stopped',
};

/** The human table. */
export function formatStatus(s: StatusSnapshot, nowMs = Date.now()): string {
  const ago = (iso: string | null) => (iso ? `${formatDuration(Math.max(0, nowMs - Date.parse(iso)))} ago (${iso})` : 'never');
  const d = s.daemon;
  const daemonLine = d.running
    ? `running (pid ${d.pid}, up ${formatDuration((d.uptimeS ?? 0) * 1000)}), ${LINK_WORDS[d.link] ?? d.link}${d.inFlightBatches ? `, ${d.inFlightBatches} batches in flight` : ''}`
    : `not running${s.mode === 'offline-by-choice' ? ' (will start offline by choice)' : ''}`;
  const rows: Array<[string, string]> = [
    ['daemon', daemonLine],
    ['mode', s.mode === 'online' ? 'online' : 'offline by choice'],
    ['pending', `${s.pending}${s.oldestPendingAgeMs !== null ? ` (oldest taken ${formatDuration(s.oldestPendingAgeMs)} ago)` : ''}`],
    ['parked', `${s.parked}${s.parked > 0 ? ' (kept, not sent; edge-sensor requeue --list shows them, --all retries them)' : ''}`],
    ...s.parkedReasons.map((p): [string, string] => ['', `  ${p.rows} ${p.reason} (seq ${p.firstSeq === p.lastSeq ? p.firstSeq : `${p.firstSeq}-${p.lastSeq}`})`]),
    ['synced', `${s.synced} in total`],
    ['last ack', ago(s.lastAckAt)],
    ['last error', s.lastError ? `${s.lastError.type} ${ago(s.lastError.at)}: ${describeDetails(s.lastError.details)}` : d.lastError ?? 'none'],
    ['retries', `${s.retries.pendingRowsRetried} pending rows have failed before (most attempts: ${s.retries.maxRetryCount})`],
    ['lost', `${s.lostTotal} readings could not be stored or were dropped${s.droppedTotal ? ` (${s.droppedTotal} dropped to keep the disk bounded)` : ''}${s.acceptingReadings ? '' : '; STORAGE FULL: new readings are not stored'}`],
    ['database', `${s.database.path}, ${formatBytes(s.database.bytes)}, last seq ${s.lastSeq}`],
  ];
  if (s.endToEnd) {
    const e = s.endToEnd;
    rows.splice(rows.findIndex(([k]) => k === 'last ack') + 1, 0, ['end to end', `stored by the collector through seq ${e.storedThrough}; ${e.unconfirmed} synced readings not yet confirmed (kept until they are)`]);
  }
  if (d.running && d.lastError && d.link !== 'online') rows.splice(1, 0, ['broker', d.lastError]);
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n');
}

function describeDetails(d: unknown): string {
  if (d && typeof d === 'object') {
    const o = d as Record<string, unknown>;
    return String(o.error ?? o.reason ?? JSON.stringify(o));
  }
  return String(d);
}
