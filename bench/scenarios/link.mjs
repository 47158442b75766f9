// The drain through a narrow uplink: the broker in a network namespace of its own behind a veth
// pair whose daemon → broker direction is limited with `tc qdisc ... tbf rate 1mbit` (netem is
// not available here). Reports readings/s through the link and its utilisation. Needs root and
// iproute2; the namespace is removed afterwards.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { startBroker } from '../lib/broker.mjs';
import { ReadingCounter } from '../lib/counter.mjs';
import { copyDb } from '../lib/backlog.mjs';
import { daemonConfig, startDaemon, readingsTopic } from '../lib/daemon.mjs';
import { stopChild } from '../lib/util.mjs';

const ip = (...a) => execFileSync('ip', a, { stdio: ['ignore', 'pipe', 'pipe'] });
const RATE_BPS = 1_000_000;

export function linkAvailable() {
  try {
    return process.getuid() === 0 && execFileSync('ip', ['-V']).length > 0;
  } catch {
    return false;
  }
}

export async function withLimitedLink(fn) {
  const tag = String(process.pid % 100000);
  const ns = `esbench${tag}`;
  const host = `esb${tag}a`;
  const peer = `esb${tag}b`;
  try {
    ip('netns', 'add', ns);
    ip('link', 'add', host, 'type', 'veth', 'peer', 'name', peer);
    ip('link', 'set', peer, 'netns', ns);
    ip('addr', 'add', '10.200.0.1/24', 'dev', host);
    ip('link', 'set', host, 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', '10.200.0.2/24', 'dev', peer);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', peer, 'up');
    ip('netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up');
    execFileSync('tc', ['qdisc', 'add', 'dev', host, 'root', 'tbf', 'rate', '1mbit', 'burst', '32kbit', 'latency', '400ms']);
    const txBytes = () => Number(readFileSync(`/sys/class/net/${host}/statistics/tx_bytes`, 'utf8'));
    return await fn({ ns, txBytes });
  } finally {
    try {
      ip('netns', 'del', ns); // removes the veth pair with it
    } catch {
      /* never created */
    }
    try {
      ip('link', 'del', host);
    } catch {
      /* gone with the namespace */
    }
  }
}

/** one drain of `n` readings through the 1 Mbit/s link */
export async function linkDrain(ctx, { backlog, n, compression }) {
  return withLimitedLink(async ({ ns, txBytes }) => {
    const broker = await startBroker(join(ctx.workDir, `broker-${ns}`), { host: '10.200.0.2', netns: ns });
    const counter = await ReadingCounter.start(broker.url, readingsTopic(), n);
    const db = join(ctx.workDir, `link-${compression}.db`);
    copyDb(backlog, db);
    const cfg = daemonConfig(ctx.workDir, { db, url: broker.url, device: `link-${compression}`, sensors: [], sync: { compression } });
    const got = counter.expectReadings(n);
    const tx0 = txBytes();
    const proc = startDaemon(cfg);
    try {
      const first = await Promise.race([got.then(() => 'done'), proc.exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('timeout'), 300_000).unref())]);
      if (first !== 'done') throw new Error(`link drain ${first}: ${counter.unique}/${n}; ${proc.err().slice(-300)}`);
      const ms = counter.doneAt - proc.spawnedAt;
      const wireBytes = txBytes() - tx0;
      return {
        readingsPerS: (n * 1000) / ms,
        ms,
        payloadUtilisation: (counter.payloadBytes * 8 * 1000) / ms / RATE_BPS,
        linkUtilisation: (wireBytes * 8 * 1000) / ms / RATE_BPS,
        payloadBytesPerReading: counter.payloadBytes / n,
      };
    } finally {
      await stopChild(proc);
      await counter.stop();
      await broker.stop();
      for (const s of ['', '-wal', '-shm']) rmSync(db + s, { force: true });
    }
  });
}
