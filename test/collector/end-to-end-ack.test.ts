import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { freePort, Mosquitto } from '../helpers/mosquitto.js';
import { daemonConfig, sqlValue } from '../helpers/daemon-config.js';
import { runCli, sleep, spawnCli, TIME_SCALE, waitFor, type Spawned } from '../helpers/process.js';
import { testSchema } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { fill } from '../helpers/stack.js';
import { Store } from '../../src/store/store.js';
import { collectorConfig, killLeftovers, remember, startCollector, stopCollector } from './helpers.js';

// Issue 16 with the real daemon, the real collector and a Mosquitto as it ships (persistence saved
// every 30 minutes, so a SIGKILL loses what it had acknowledged): the collector paused while the
// broker queues for it, then the broker killed.

const tmp = makeTmp('es-e2eack-');
let mosq: Mosquitto;
beforeAll(async () => {
  // not the helper's broker, which saves on every change: persistence as Mosquitto ships it
  const dir = join(tmp.dir, 'mosq');
  mosq = new Mosquitto(dir, await freePort());
  writeFileSync(mosq.confPath, [`listener ${mosq.port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`, 'user root', ''].join('\n'));
  await mosq.start();
});
afterAll(async () => {
  await killLeftovers();
  await mosq?.stop();
  tmp.cleanup();
});

const SYNC = { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 2000, shutdownTimeoutMs: 1000, retry: { initialDelayMs: 100, maxDelayMs: 500, maxAttempts: 50 } };

function device(name: string, prefix: string, o: { endToEnd: boolean; perSecond: number; db?: string }) {
  return daemonConfig(tmp.dir, name, {
    ...(o.db ? { database: { path: o.db } } : {}),
    mqtt: { url: mosq.url, topicPrefix: prefix },
    sync: { ...SYNC, endToEnd: o.endToEnd },
    status: { intervalMs: 1000 },
    sensors: o.perSecond > 0 ? [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: o.perSecond }] : [],
    log: { level: 'info' },
  });
}

async function collector(name: string, prefix: string) {
  const schema = await testSchema(`e2e_${name}`);
  const files = collectorConfig(tmp.dir, name, { url: mosq.url, pgUrl: schema.url, schema: schema.schema, prefix, extra: { mqtt: { receiveMaximum: 2 }, endToEnd: { intervalMs: 300, tailWindowMs: 2000, republishMs: 5000 } } });
  return { schema, files, proc: await startCollector(files) };
}

const seqs = (file: string, where: string) => {
  const d = new Database(file, { readonly: true });
  try {
    return d.prepare(`SELECT seq FROM transactions WHERE ${where} ORDER BY seq`).pluck().all() as number[];
  } finally {
    d.close();
  }
};

/**
 * SIGSTOP the collector, let the broker queue for it, SIGKILL the broker (it loses the queue), restart it, SIGCONT.
 * The collector's Receive Maximum is small: what the broker already wrote to its socket would
 * otherwise still be read after SIGCONT, and little would be lost.
 */
async function loseQueue(col: Spawned, queueMs: number, whileDown?: () => void | Promise<void>): Promise<void> {
  col.child.kill('SIGSTOP');
  await sleep(queueMs);
  await mosq.kill();
  await whileDown?.();
  await mosq.start();
  col.child.kill('SIGCONT');
}

async function pgSeqs(q: (t: string, v?: unknown[]) => Promise<Array<{ seq: number }>>, dev: string): Promise<Set<number>> {
  return new Set((await q('SELECT seq::int AS seq FROM readings WHERE device = $1', [dev]).catch(() => [])).map((r) => r.seq));
}

describe('end to end with the collector', () => {
  it('sync.endToEnd false: the stored topic is ignored entirely (nothing subscribed, nothing sent again, nothing kept)', async () => {
    const prefix = 'e2eoff';
    const off = device('pi-off', prefix, { endToEnd: false, perSecond: 20 });
    const on = device('pi-on', prefix, { endToEnd: true, perSecond: 20 });
    const daemons = [off, on].map((c) => remember(spawnCli(['run', ...c.args])));
    const pub = await mqtt.connectAsync(mosq.url, { protocolVersion: 5 });
    try {
      await waitFor(() => [off, on].every((c) => sqlValue(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1') >= 40), 30_000, 'both syncing');
      // the same request to both, at once: the one that listens proves the request was there to act on
      for (const d of ['pi-off', 'pi-on']) await pub.publishAsync(`${prefix}/${d}/stored`, JSON.stringify({ through: 7, missing: [[1, 20]] }), { qos: 1, retain: true });
      await waitFor(() => sqlValue(on.db, "SELECT count(*) FROM sync_log WHERE event_type = 'resend_requested'") === 1, 20_000, 'the listening daemon acting');
      expect(sqlValue(on.db, "SELECT value FROM config WHERE key = 'stored_through'")).toBe('7');
      await waitFor(() => sqlValue(on.db, 'SELECT count(*) FROM transactions WHERE synced = 0 AND seq <= 20') === 0, 20_000, 'the resend acknowledged');
      expect(sqlValue(off.db, "SELECT count(*) FROM sync_log WHERE event_type = 'resend_requested'")).toBe(0);
      expect(sqlValue(off.db, "SELECT count(*) FROM config WHERE key = 'stored_through'")).toBe(0);
      expect(sqlValue(off.db, 'SELECT count(*) FROM transactions WHERE synced = 0 AND seq <= 20')).toBe(0);
      const statusOf = async (dev: string) => {
        const sub = await mqtt.connectAsync(mosq.url, { protocolVersion: 5 });
        try {
          const got = new Promise<Record<string, unknown>>((r) => sub.on('message', (_t, p) => r(JSON.parse(p.toString()))));
          await sub.subscribeAsync(`${prefix}/${dev}/status`, { qos: 1 });
          return await got;
        } finally {
          await sub.endAsync();
        }
      };
      // the next status of the listening one says what it keeps; the other's never does
      const onStatus = await waitFor(async () => {
        const st = await statusOf('pi-on');
        return st.storedThrough === 7 ? st : undefined;
      }, 20_000, 'a status with storedThrough');
      expect(onStatus).toMatchObject({ syncedThrough: expect.any(Number), unconfirmed: expect.any(Number) });
      expect(onStatus!.unconfirmed).toBeGreaterThan(0);
      expect(await statusOf('pi-off')).not.toHaveProperty('storedThrough');
      // and `edge-sensor status`, text and JSON
      const json = JSON.parse((await runCli(['status', ...on.args, '--json'])).stdout);
      expect(json.endToEnd).toMatchObject({ storedThrough: 7, unconfirmed: expect.any(Number), syncedThrough: expect.any(Number) });
      expect((await runCli(['status', ...on.args])).stdout).toMatch(/^end to end\s+stored by the collector through seq 7; \d+ synced readings not yet confirmed/m);
      expect(JSON.parse((await runCli(['status', ...off.args, '--json'])).stdout)).not.toHaveProperty('endToEnd');
    } finally {
      for (const d of ['pi-off', 'pi-on']) await pub.publishAsync(`${prefix}/${d}/stored`, '', { qos: 1, retain: true });
      await pub.endAsync();
      for (const d of daemons) d.child.kill('SIGTERM');
      for (const d of daemons) expect((await d.exited).code).toBe(0);
    }
  }, 90_000 * TIME_SCALE);

  it('readings a SIGKILLed broker had acknowledged reach PostgreSQL; rows the device no longer has become a dropped gap', async () => {
    const prefix = 'e2ekill';
    const col = await collector('kill', prefix);
    const cfg = device('pi-k', prefix, { endToEnd: true, perSecond: 150 });
    const d = remember(spawnCli(['run', ...cfg.args]));
    try {
      const q = col.schema.q as (t: string, v?: unknown[]) => Promise<Array<{ seq: number }>>;
      await waitFor(async () => (await pgSeqs(q, 'pi-k')).size > 500, 30_000, 'readings stored');

      // round 1: the broker loses what it queued for the paused collector; the device sends it again.
      // Again if the broker happened to lose nothing the collector did not have.
      let lost: number[] = [];
      for (let attempt = 1; attempt <= 3 && lost.length === 0; attempt++) {
        await loseQueue(col.proc, 2000, async () => {
          const have = await pgSeqs(q, 'pi-k');
          lost = seqs(cfg.db, 'synced = 1').filter((x) => !have.has(x));
        });
      }
      expect(lost.length).toBeGreaterThan(0);
      const s1 = Math.max(...seqs(cfg.db, '1 = 1'));
      await waitFor(async () => {
        const got = await pgSeqs(q, 'pi-k');
        return seqs(cfg.db, `seq <= ${s1}`).every((x) => got.has(x));
      }, 90_000, `every reading up to seq ${s1} in PostgreSQL`);
      expect(sqlValue(cfg.db, "SELECT count(*) FROM sync_log WHERE event_type = 'resend_requested'")).toBeGreaterThan(0);

      // round 2: the same, and meanwhile the device deletes the synced rows the collector does not have
      // (as its disk cap would): they become a dropped gap. Again while the broker happens to lose
      // none of them (what the collector still had in its socket when the broker died is stored).
      let droppedNow = 0;
      for (let attempt = 1; attempt <= 4 && droppedNow === 0; attempt++) {
        let deleted: number[] = [];
        await loseQueue(col.proc, 2000, async () => {
          const have = await pgSeqs(q, 'pi-k');
          const db = new Database(cfg.db);
          db.pragma('busy_timeout = 5000');
          const newest = db.prepare('SELECT max(seq) FROM transactions').pluck().get() as number;
          deleted = (db.prepare('SELECT seq FROM transactions WHERE synced = 1 AND seq < ? ORDER BY seq').pluck().all(newest) as number[]).filter((x) => !have.has(x));
          const del = db.prepare('DELETE FROM transactions WHERE seq = ?');
          db.transaction(() => deleted.forEach((x) => del.run(x)))();
          db.close();
        });
        const s2 = Math.max(...seqs(cfg.db, '1 = 1'));
        // every seq up to s2 ends stored or in a dropped gap: none open
        await waitFor(async () => {
          const open = await q("SELECT from_seq FROM gaps WHERE device = 'pi-k' AND state = 'open' AND from_seq <= $1", [s2]);
          const stored = await pgSeqs(q, 'pi-k');
          return open.length === 0 && stored.has(s2);
        }, 90_000, `no open gap up to seq ${s2}`);
        const dropped = (await q("SELECT from_seq::int AS f, to_seq::int AS t, reason FROM gaps WHERE device = 'pi-k' AND state = 'dropped'")) as unknown as Array<{ f: number; t: number; reason: string }>;
        const stored = await pgSeqs(q, 'pi-k');
        const inDropped = (x: number) => dropped.some((g) => g.f <= x && x <= g.t);
        expect(deleted.every((x) => stored.has(x) || inDropped(x))).toBe(true);
        expect(dropped.every((g) => g.reason === 'asked for again, no longer on the device')).toBe(true);
        // and nothing else is missing: every seq up to s2 is stored or dropped
        for (let x = 1; x <= s2; x++) if (!stored.has(x)) expect(inDropped(x), `seq ${x}`).toBe(true);
        droppedNow = deleted.filter((x) => !stored.has(x)).length;
      }
      expect(droppedNow).toBeGreaterThan(0);
    } finally {
      d.child.kill('SIGTERM');
      expect((await d.exited).code).toBe(0);
      expect(await stopCollector(col.proc)).toBe(0);
      await col.schema.cleanup();
    }
  }, 300_000 * TIME_SCALE);

  it('a tail gap: the broker lost the last readings of a device that then has nothing more to send; its status makes the collector ask', async () => {
    const prefix = 'e2etail';
    const col = await collector('tail', prefix);
    const db = join(tmp.dir, 'pi-t.db');
    const store = new Store(db);
    fill(store, 2000, 500);
    store.close();
    const cfg = device('pi-t', prefix, { endToEnd: true, perSecond: 0, db });
    // the collector paused from the start: everything the device sends is queued, then lost
    col.proc.child.kill('SIGSTOP');
    const d = remember(spawnCli(['run', ...cfg.args]));
    try {
      await waitFor(() => sqlValue(db, 'SELECT count(*) FROM transactions WHERE synced = 0') === 0, 30_000, 'the backlog sent');
      await mosq.kill();
      await mosq.start();
      col.proc.child.kill('SIGCONT');
      const q = col.schema.q as (t: string, v?: unknown[]) => Promise<Array<{ seq: number }>>;
      await waitFor(async () => (await pgSeqs(q, 'pi-t')).size === 2000, 60_000, 'all 2,000 readings in PostgreSQL');
      await waitFor(() => String(sqlValue(db, "SELECT value FROM config WHERE key = 'stored_through'")) === '2000', 20_000, 'the device told');
      expect(sqlValue(db, "SELECT count(*) FROM sync_log WHERE event_type = 'resend_requested'")).toBeGreaterThan(0);
    } finally {
      d.child.kill('SIGTERM');
      expect((await d.exited).code).toBe(0);
      expect(await stopCollector(col.proc)).toBe(0);
      await col.schema.cleanup();
    }
  }, 120_000 * TIME_SCALE);
});
