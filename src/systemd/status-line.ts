import type { StatusPayload } from '../status/device-status.js';
import { formatDuration } from '../util/duration.js';

/** What `systemctl status` shows of a running daemon. */
export interface ServiceView {
  linkView(): string;
  statusPayload(): Pick<StatusPayload, 'pending' | 'parked' | 'oldestPendingAgeMs'>;
}

/** One line for STATUS=: the link and the backlog, e.g. "unreachable, 1520 pending (oldest 2.5 h), 3 parked". */
export function statusLine(d: ServiceView): string {
  const link = d.linkView();
  const s = d.statusPayload();
  const parts = [link, `${s.pending ?? 0} pending`];
  // the age only matters once a backlog builds up; a healthy device always has a few seconds' worth
  if (s.pending && s.oldestPendingAgeMs != null && s.oldestPendingAgeMs >= 60_000) parts[1] += ` (oldest ${formatDuration(s.oldestPendingAgeMs)})`;
  if (s.parked) parts.push(`${s.parked} parked`);
  return parts.join(', ');
}
