import { statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Why the folder of `path` is unsafe for files the daemon trusts, or undefined. A folder every
 * user may write to (/tmp, a careless chmod 777) lets any of them put a file or a link where the
 * database, its -wal/-shm or the control socket will be.
 */
export function sharedFolderProblem(path: string): string | undefined {
  const dir = dirname(path);
  let mode: number;
  try {
    const st = statSync(dir);
    if (!st.isDirectory()) return undefined;
    mode = st.mode;
  } catch {
    return undefined; // made by us when needed, 0750
  }
  if ((mode & 0o002) === 0) return undefined;
  return `its folder ${dir} is writable by every user (mode 0${(mode & 0o7777).toString(8)}), so anyone could plant a file or link there; use a folder of the service's own (e.g. /var/lib/edge-sensor) or chmod o-w ${dir}`;
}
