// Bytes on the wire per reading: the daemon drains a backlog of the default sensors' readings in
// batches of 500 through a counting proxy (client → broker, MQTT framing included), with and
// without sync.compression: gzip.
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { copyDb } from '../lib/backlog.mjs';
import { daemonConfig, startDaemon } from '../lib/daemon.mjs';
import { countingProxy } from '../lib/proxy.mjs';
import { stopChild } from '../lib/util.mjs';

export async function wireOnce(ctx, { backlog, n, compression }) {
  const proxy = await countingProxy(ctx.broker.port);
  const db = join(ctx.workDir, `wire-${compression}.db`);
  copyDb(backlog, db);
  const device = `wire-${compression}`;
  const cfg = daemonConfig(ctx.workDir, { db, url: proxy.url, device, sensors: [], sync: { compression } });
  const got = ctx.counter.expectReadings(n);
  const proc = startDaemon(cfg);
  try {
    const first = await Promise.race([got.then(() => 'done'), proc.exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('timeout'), 120_000).unref())]);
    if (first !== 'done') throw new Error(`wire drain ${first}: ${ctx.counter.unique}/${n} readings; ${proc.err().slice(-400)}`);
    // the counter saw everything; the PUBACKs and the daemon's marking follow within moments
    await new Promise((r) => setTimeout(r, 300));
    return { bytesPerReading: proxy.counts.up / n, downPerReading: proxy.counts.down / n, payloadPerReading: ctx.counter.payloadBytes / n };
  } finally {
    await stopChild(proc);
    await proxy.close();
    for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  }
}
