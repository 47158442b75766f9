import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * `mkdir -p` that always ends. Node 20's `mkdirSync(p, { recursive: true })` spins forever at
 * full CPU (deaf to SIGTERM, since it never returns to the event loop) when a file system answers
 * mkdir with ENOENT although the parent exists, as /proc does ("/proc/x/edge.db" as a database
 * path hung the daemon). Here each missing folder is made once, from the topmost down, and the
 * first error is thrown as it is.
 */
export function mkdirp(dir: string, mode: number): void {
  const missing: string[] = [];
  for (let d = dir; ; d = dirname(d)) {
    try {
      statSync(d); // there: a file in the way makes the mkdir or open below fail with ENOTDIR
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (dirname(d) === d) throw err; // not even the root exists
      missing.push(d);
    }
  }
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
    } catch (err) {
      // made meanwhile by another process (a CLI `record` beside the daemon starting)
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(d).isDirectory()) throw err;
    }
  }
}
