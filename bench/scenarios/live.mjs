// Live values under a backlog: how long after a sample its value reaches a dashboard (the retained
// `state` message) while the daemon drains pending readings through a slow link (a delay each way)
// with its batch window full. The figure the issue asks for: well under a second, whatever the backlog.
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import mqtt from 'mqtt';
import { copyDb } from '../lib/backlog.mjs';
import { delayingProxy } from '../lib/proxy.mjs';
import { daemonConfig, startDaemon, simSensors, TOPIC_PREFIX } from '../lib/daemon.mjs';
import { stopChild, waitFor } from '../lib/util.mjs';

/** one run: `samples` state messages after the first, each one's delay from its sample's timestamp */
export async function liveOnce(ctx, { backlog, delayMs, samples }) {
  const device = `live-${Date.now() % 100000}`;
  const db = join(ctx.workDir, `${device}.db`);
  copyDb(backlog, db);
  const proxy = await delayingProxy(ctx.broker.port, delayMs);
  const sub = mqtt.connect(ctx.broker.url, { protocolVersion: 5, clientId: `bench-live-${process.pid}` });
  const latencies = [];
  sub.on('message', (_t, payload, packet) => {
    if (packet.retain) return;
    const v = JSON.parse(payload.toString())['sim-0'];
    if (v?.ts) latencies.push(Date.now() - Date.parse(v.ts));
  });
  await new Promise((r) => sub.once('connect', r));
  await sub.subscribeAsync(`${TOPIC_PREFIX}/${device}/state`, { qos: 0 });
  const cfg = daemonConfig(ctx.workDir, { db, url: proxy.url, device, sensors: simSensors(1), extra: { state: { enabled: true } } });
  const proc = startDaemon(cfg);
  try {
    await waitFor(() => latencies.length > samples || proc.child.exitCode !== null, 120_000, 'state messages');
    const d = new Database(db, { readonly: true });
    const pending = d.prepare('SELECT count(*) AS n FROM transactions WHERE synced = 0').get().n;
    d.close();
    // the first message may have waited for the connection itself
    const l = latencies.slice(1).sort((a, b) => a - b);
    return { medianMs: l[Math.floor(l.length / 2)], maxMs: l[l.length - 1], pending };
  } finally {
    await stopChild(proc);
    await sub.endAsync(true);
    await proxy.close();
    for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
  }
}
