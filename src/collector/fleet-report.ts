import { formatDuration } from '../util/duration.js';
import type { FleetSnapshot, GapListing } from './pg/fleet.js';

// Control characters (C0, DEL, C1), and the invisible ones that reorder or hide text (bidi
// overrides, zero-width, line separators): a device id or sensor name holding them must not move a
// terminal's cursor, recolour it or make one id look like another.
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;
const hex = (c: string) => c.charCodeAt(0).toString(16).padStart(4, '0');

/** A device-supplied string made safe for a terminal: invisible and control characters shown as \uXXXX. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => `\\u${hex(c)}`);
}

// what JSON.stringify leaves raw inside strings (it escapes C0 itself; the layout's newlines stay)
const UNPRINTABLE_IN_JSON = /[\u007f-\u009f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g;

/** JSON for a terminal or a pipe: JSON.stringify leaves C1 and bidi characters raw, escape them too. */
export function safeJson(v: unknown): string {
  return JSON.stringify(v, null, 2).replace(UNPRINTABLE_IN_JSON, (c) => `\\u${hex(c)}`);
}

export interface FleetRow {
  device: string;
  state: 'online' | 'offline' | 'unknown';
  lastSeen: string | null;
  lastSeenAgoMs: number | null;
  readingsStored: number;
  highestSeq: number;
  newestTs: string | null;
  /** now minus the newest reading's ts */
  lagMs: number | null;
  /** readings waiting on the device, from its last status */
  pending: number | null;
  openGaps: { ranges: number; readings: number };
  droppedAnnounced: number;
  duplicatesAbsorbed: number;
  rejectedMessages: number;
  /** end to end: every reading up to this seq is stored or announced dropped */
  through: number;
  /** readings synced by the device and not yet confirmed stored: only at the broker (its last status; null without sync.endToEnd) */
  atBrokerOnly: number | null;
}

export function fleetRows(s: FleetSnapshot): FleetRow[] {
  const now = s.now.getTime();
  return s.devices.map((d) => {
    return {
      device: d.device,
      state: d.online === true ? 'online' : d.online === false ? 'offline' : 'unknown',
      lastSeen: d.lastSeen?.toISOString() ?? null,
      lastSeenAgoMs: d.lastSeen ? now - d.lastSeen.getTime() : null,
      readingsStored: d.readingsStored,
      highestSeq: d.highestSeq,
      newestTs: d.newestTs?.toISOString() ?? null,
      lagMs: d.newestTs ? now - d.newestTs.getTime() : null,
      pending: d.pending,
      openGaps: { ranges: d.openGaps, readings: d.openReadings },
      droppedAnnounced: d.droppedAnnounced,
      duplicatesAbsorbed: d.duplicatesAbsorbed,
      rejectedMessages: d.rejectedMessages,
      through: d.through,
      atBrokerOnly: d.unconfirmed,
    };
  });
}

/** Why a device needs a look (the fleet page lists these first): offline, behind, a backlog, holes. */
export function troubles(r: FleetRow, limits: { lagMs: number; pending: number }): Array<'offline' | 'lag' | 'backlog' | 'gaps'> {
  const out: Array<'offline' | 'lag' | 'backlog' | 'gaps'> = [];
  if (r.state === 'offline') out.push('offline');
  if (r.lagMs !== null && r.lagMs > limits.lagMs) out.push('lag');
  if (r.pending !== null && r.pending > limits.pending) out.push('backlog');
  if (r.openGaps.ranges > 0) out.push('gaps');
  return out;
}

export function fleetJson(s: FleetSnapshot): string {
  return safeJson({ generatedAt: s.now.toISOString(), devices: fleetRows(s), rejectedMessages: Object.fromEntries(s.rejected.map((r) => [r.reason, r.count])) });
}

const n = (v: number) => v.toLocaleString('en-US');
const ago = (ms: number | null) => (ms === null ? '-' : `${formatDuration(Math.max(0, ms))} ago`);

/** One line per device, for people. */
export function fleetText(s: FleetSnapshot): string {
  const rows = fleetRows(s);
  if (rows.length === 0) return 'no devices yet (nothing received: is the collector running and subscribed to the right topicPrefix?)\n';
  const head = ['DEVICE', 'STATE', 'LAST SEEN', 'STORED', 'LAG', 'PENDING', 'OPEN GAPS', 'DROPPED', 'DUPLICATES', 'CONFIRMED', 'AT BROKER'];
  const cells = rows.map((r) => [
    printable(r.device),
    r.state,
    ago(r.lastSeenAgoMs),
    n(r.readingsStored),
    r.lagMs === null ? '-' : formatDuration(Math.max(0, r.lagMs)),
    r.pending === null ? '-' : n(r.pending),
    r.openGaps.ranges === 0 ? '0' : `${n(r.openGaps.ranges)} (${n(r.openGaps.readings)} readings)`,
    n(r.droppedAnnounced),
    n(r.duplicatesAbsorbed),
    // end to end: every seq through this one is in the database (or announced dropped)
    `≤ ${n(r.through)}`,
    r.atBrokerOnly === null ? '-' : n(r.atBrokerOnly),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i === 0 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join('  ').trimEnd();
  const out = [line(head), ...cells.map(line)];
  const rejected = s.rejected.reduce((a, r) => a + r.count, 0);
  out.push('', `${rows.length} devices; ${rejected === 0 ? 'no rejected messages' : `${n(rejected)} rejected messages (${s.rejected.map((r) => `${r.reason} ${n(r.count)}`).join(', ')}): see the rejected_messages table`}`);
  const withGaps = rows.filter((r) => r.openGaps.ranges > 0);
  out.push('CONFIRMED: every seq up to it is in the database or announced dropped; AT BROKER: readings the device synced that the database has not confirmed (devices with sync.endToEnd)');
  if (withGaps.length > 0) out.push(`open gaps: edge-sensor fleet --gaps DEVICE lists them (${withGaps.map((r) => printable(r.device)).join(', ')})`);
  return out.join('\n') + '\n';
}

export function gapsJson(g: GapListing): string {
  return safeJson({
    device: g.device,
    known: g.known,
    truncated: g.truncated,
    gaps: g.gaps.map((x) => ({ from: x.from, to: x.to, readings: x.to - x.from + 1, state: x.state, reason: x.reason, openedAt: x.openedAt.toISOString(), closedAt: x.closedAt?.toISOString() ?? null })),
  });
}

export function gapsText(g: GapListing): string {
  if (!g.known) return `no device ${printable(g.device)} in the database\n`;
  if (g.gaps.length === 0) return `${printable(g.device)}: no gaps: every seq from 1 to the highest is stored\n`;
  const lines = g.gaps.map((x) => {
    const range = x.from === x.to ? `${x.from}` : `${x.from}-${x.to}`;
    const closed = x.closedAt ? `, closed ${x.closedAt.toISOString()}` : '';
    const why = x.reason ? ` (${printable(x.reason)})` : '';
    return `${range.padEnd(24)} ${String(x.to - x.from + 1).padStart(9)} readings  ${x.state.padEnd(7)} opened ${x.openedAt.toISOString()}${closed}${why}`;
  });
  if (g.truncated) lines.push(`... more gaps not shown`);
  return `${printable(g.device)}: ${g.gaps.length} gap ranges (open: not arrived yet; dropped: announced lost by the device; filled: arrived late)\n${lines.join('\n')}\n`;
}
