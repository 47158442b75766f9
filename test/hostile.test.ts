import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, connect as netConnect, type Server } from 'node:net';
import { mkdirSync, chmodSync, statSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Mosquitto, freePort } from './helpers/mosquitto.js';
import { makeTmp } from './helpers/tmp.js';
import { daemonConfig, sqlValue } from './helpers/daemon-config.js';
import { runCli, spawnCli, waitFor, type Spawned } from './helpers/process.js';
import { makeStack } from './helpers/stack.js';
import { Store } from '../src/store/store.js';
import { ControlServer } from '../src/control/server.js';
import { silentLogger } from '../src/util/logger.js';
import { formatWatchEvent } from '../src/cli/watch.js';
import { printable, printableJson } from '../src/util/printable.js';
import { readFileCapped, FileTooLargeError } from '../src/util/read-capped.js';
import { DESCRIPTION_MAX_CHARS } from '../src/sensors/reading.js';
import { Ds18b20Sensor } from '../src/sensors/sysfs/ds18b20.js';

const tmp = makeTmp('es-host-');
afterAll(tmp.cleanup);

/** One request line to a control socket, the raw answer back ('' when the daemon closed without one). */
function ask(sock: string, line: string | Buffer, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(sock);
    let out = '';
    const t = setTimeout(() => s.destroy(), timeoutMs);
    s.on('data', (d) => (out += d));
    s.on('error', () => resolve('ERR'));
    s.on('close', () => {
      clearTimeout(t);
      resolve(out.trim());
    });
    s.write(line);
    s.write('\n');
  });
}

describe('a reading the broker can never take', () => {
  let mosq: Mosquitto;
  beforeAll(async () => {
    // 1 KB: batches of ordinary readings fit; a reading with a long description does not, even alone
    mosq = await Mosquitto.start(join(tmp.dir, 'mosq-small'), ['max_packet_size 1024']);
  });
  afterAll(async () => mosq?.stop());

  it('is parked within one round with its reason, while a 1,000-readings/s stream keeps flowing (MQTT 5)', async () => {
    const c = daemonConfig(tmp.dir, 'big5', {
      mqtt: { url: mosq.url, topicPrefix: 'host', protocolVersion: 5 },
      sync: { batchSize: 200, maxInFlight: 8, intervalMs: 100, retry: { initialDelayMs: 200, maxDelayMs: 1000, maxAttempts: 5 } },
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 1000 }],
    });
    const d = spawnCli(['run', ...c.args]);
    try {
      await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1') >= 2000, 20_000, 'the stream to flow');
      const rec = await runCli(['record', ...c.args, '--amount', '1', '--description', 'x'.repeat(DESCRIPTION_MAX_CHARS), '--json']);
      expect(rec.code).toBe(0);
      const seq = JSON.parse(rec.stdout).seq as number;
      const connects = () => sqlValue(c.db, "SELECT count(*) FROM sync_log WHERE event_type IN ('connected', 'disconnected')");
      const c0 = connects();
      await waitFor(() => sqlValue(c.db, `SELECT count(*) FROM transactions WHERE seq = ${seq} AND parked_at IS NOT NULL`) === 1, 5000, 'the oversize reading to be parked');
      expect(sqlValue(c.db, `SELECT park_reason FROM transactions WHERE seq = ${seq}`) as unknown as string).toMatch(/too large for the broker: \d+ bytes alone, the broker takes at most 1024/);
      // everything after it goes on being delivered, without a reconnect
      const after = sqlValue(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1');
      await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1') >= after + 3000, 20_000, 'the stream to keep flowing');
      expect(sqlValue(c.db, `SELECT count(*) FROM transactions WHERE seq > ${seq} AND seq < ${seq} + 2000 AND synced = 0`)).toBe(0);
      expect(connects()).toBe(c0);
      // visible in the sync log, in status and in requeue --list
      expect(sqlValue(c.db, `SELECT count(*) FROM sync_log WHERE event_type = 'rows_parked' AND details LIKE '%too large%'`)).toBe(1);
      const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
      expect(st.parkedReasons).toEqual([expect.objectContaining({ rows: 1, firstSeq: seq, reason: expect.stringMatching(/too large/) })]);
      const list = await runCli(['requeue', ...c.args, '--list']);
      expect(list.stdout).toMatch(new RegExp(`seq ${seq} .*too large for the broker`));
    } finally {
      d.child.kill('SIGTERM');
      await d.exited;
    }
  });

  it('under MQTT 3.1.1, where the broker can only close the connection, is found and parked and the rest delivered', async () => {
    const store = new Store(join(tmp.dir, 'big4.db'));
    const normal = Array.from({ length: 50 }, (_, i) => ({ sensor: 's', value: i, unit: 'C' }));
    store.append(normal);
    store.append([{ sensor: 's', value: 0, unit: 'C', description: 'y'.repeat(1000) }]);
    store.append(normal);
    const bigSeq = 51;
    const stack = makeStack({ dir: tmp.dir, url: mosq.url, name: 'big4', protocolVersion: 4, store, sync: { batchSize: 40, maxInFlight: 4, intervalMs: 50 } });
    stack.start();
    try {
      await waitFor(() => store.stats().pending === 0, 30_000, 'every other reading delivered');
      expect(store.stats().parked).toBe(1);
      expect(store.parkedRows()[0]).toMatchObject({ seq: bigSeq, reason: expect.stringMatching(/^too large for the broker: \d+ bytes alone, more than the \d+ bytes taken as its limit/) });
      expect(store.stats().syncedTotal).toBe(100);
    } finally {
      await stack.stop();
    }
  });
});

describe('the control socket against anything a client sends', () => {
  const dir = join(tmp.dir, 'ctl');
  let d: Spawned;
  let sock: string;
  let listener: Server;
  let brokerConnects = 0;
  beforeAll(async () => {
    mkdirSync(dir);
    // a "broker" that takes every connection and closes it at once: counts how often the daemon tries
    listener = createServer((s) => {
      brokerConnects++;
      s.destroy();
    });
    const port = await freePort();
    await new Promise<void>((r) => listener.listen(port, '127.0.0.1', r));
    const c = daemonConfig(dir, 'ctl', {
      mqtt: { url: `mqtt://127.0.0.1:${port}`, connectTimeoutMs: 1000 },
      sync: { retry: { initialDelayMs: 2000, maxDelayMs: 30_000 } },
      sensors: [{ type: 'simulated', name: 'sim', schedule: '* * * * * *' }],
    });
    sock = `${c.db}.sock`;
    d = spawnCli(['run', ...c.args]);
    // the daemon answering, not the socket file: it exists a moment before the daemon listens on it
    await waitFor(async () => (await ask(sock, '{"cmd":"ping"}')).includes('"ok":true'), 15_000, 'the control socket to answer');
  });
  afterAll(async () => {
    d.child.kill('SIGTERM');
    await d.exited;
    listener.close();
  });

  it('refuses the lines that crashed or fooled it, and keeps answering', async () => {
    for (const line of ['null', '[]', '1', '"x"', 'true', '{}', '{"cmd":null}', '{"cmd":["sync"]}', '{"cmd":"toString"}', '{"cmd":"constructor"}', '{"cmd":"__proto__"}', '{"cmd":"hasOwnProperty"}', '{"cmd":"status","args":[]}', '{"cmd":"status","args":null}', '{"cmd":"requeue","args":{"ids":"x"}}', '{"cmd":"requeue","args":{"ids":[1,null]}}', '{"cmd":"sync","args":{"__proto__":{"x":1}}}', '{"cmd":"sync","args":{"timeoutMs":"9"}}', '{"cmd":"ping","extra":1}', '{"cmd":1e309}']) {
      const res = await ask(sock, line);
      expect(JSON.parse(res), line).toMatchObject({ ok: false, error: expect.any(String) });
    }
    expect(JSON.parse(await ask(sock, '{"cmd":"ping"}'))).toMatchObject({ ok: true, result: { pid: d.child.pid } });
  });

  it('answers a flood of sync requests without a flood of broker connections', async () => {
    const before = brokerConnects;
    const started = Date.now();
    let requests = 0;
    let answered = 0;
    // ten clients asking again as soon as they have their answer, for five seconds
    const client = async () => {
      while (Date.now() - started < 5000) {
        requests++;
        const a = await ask(sock, '{"cmd":"sync","args":{"timeoutMs":200}}', 20_000);
        if (/"ok":true/.test(a)) answered++; // the request is answered; the sync itself fails (no broker)
      }
    };
    await Promise.all(Array.from({ length: 10 }, client));
    expect(answered).toBe(requests);
    expect(requests).toBeGreaterThan(50);
    const seconds = (Date.now() - started) / 1000;
    // 3 forced attempts at once, then one per 10 s, and the link's own retries (backoff from 2 s)
    expect(brokerConnects - before).toBeLessThanOrEqual(3 + Math.ceil(seconds / 10) + Math.ceil(seconds / 2));
  }, 120_000);

  it('survives 10,000 random JSON values and byte strings, then answers status', async () => {
    let seed = 12345;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(a: readonly T[]) => a[Math.floor(rnd() * a.length)];
    const names = ['ping', 'online', 'offline', 'sync', 'requeue', 'status', 'toString', '__proto__', 'valueOf', '', 'x'.repeat(300)];
    const value = (depth: number): unknown => {
      switch (Math.floor(rnd() * (depth > 2 ? 5 : 8))) {
        case 0: return null;
        case 1: return rnd() < 0.5;
        case 2: return pick([0, -1, 1e308, -1e-300, 2 ** 53 + 1, 1.5]);
        case 3: return pick(names);
        case 4: return String.fromCharCode(...Array.from({ length: Math.floor(rnd() * 20) }, () => Math.floor(rnd() * 0xffff)));
        case 5: return Array.from({ length: Math.floor(rnd() * 4) }, () => value(depth + 1));
        case 6: return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 4) }, () => [pick([...names, 'args', 'cmd', 'ids', 'timeoutMs']), value(depth + 1)]));
        default: return { cmd: pick(names), args: value(depth + 1) };
      }
    };
    const lines: Array<string | Buffer> = [];
    for (let i = 0; i < 10_000; i++) {
      if (i % 4 === 0) lines.push(Buffer.from(Array.from({ length: Math.floor(rnd() * 200) }, () => Math.floor(rnd() * 256)).filter((b) => b !== 10)));
      else lines.push(JSON.stringify(value(0)));
    }
    let next = 0;
    let answered = 0;
    const worker = async () => {
      while (next < lines.length) {
        // long enough for the slowest handler (a forced sync waits up to 10 s), so that every line gets its answer
        const res = await ask(sock, lines[next++], 15_000);
        if (res.startsWith('{')) answered++;
      }
    };
    await Promise.all(Array.from({ length: 20 }, worker));
    expect(d.child.exitCode).toBe(null);
    expect(answered).toBe(lines.length);
    expect(JSON.parse(await ask(sock, '{"cmd":"status"}'))).toMatchObject({ ok: true, result: { pid: d.child.pid } });
  }, 300_000);
});

describe('files and folders', () => {
  it('a 1-Wire file swapped for a link to /dev/zero costs one bounded read, not memory', async () => {
    const sys = join(tmp.dir, 'sys');
    const dev = join(sys, 'bus/w1/devices/28-0316a2797aff');
    mkdirSync(dev, { recursive: true });
    symlinkSync('/dev/zero', join(dev, 'w1_slave'));
    const s = new Ds18b20Sensor({ name: 'w1', unit: 'C', ids: [], names: {} }, sys, { warn: () => {} });
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < 20; i++) expect(await s.read()).toEqual([]);
    expect(s.rejected.get('28-0316a2797aff')).toEqual({ 'read-error': 20 });
    expect(process.memoryUsage().rss - rss).toBeLessThan(64 * 1024 * 1024);
  });

  it('record refuses descriptions and units past their limits, and control characters, at the CLI', async () => {
    const c = daemonConfig(tmp.dir, 'limits', { sensors: [] });
    for (const args of [['--description', 'x'.repeat(DESCRIPTION_MAX_CHARS + 1)], ['--unit', 'u'.repeat(33)], ['--description', 'a\u001b[2Jb'], ['--unit', 'C\u0007']]) {
      const r = await runCli(['record', ...c.args, '--amount', '1', ...args]);
      expect(r.code, args[0]).toBe(64);
      expect(r.stderr).toMatch(new RegExp(`${args[0]} expects at most`));
    }
    expect(existsSync(c.db)).toBe(false);
    expect((await runCli(['record', ...c.args, '--amount', '1', '--unit', 'u'.repeat(32), '--description', 'x'.repeat(DESCRIPTION_MAX_CHARS)])).code).toBe(0);
  });

  it('reads at most the cap of a file that never ends', () => {
    expect(() => readFileCapped('/dev/zero', 4096)).toThrow(FileTooLargeError);
    const p = join(tmp.dir, 'small.txt');
    writeFileSync(p, 'x'.repeat(20_000));
    expect(readFileCapped(p, 20_000).length).toBe(20_000);
    expect(() => readFileCapped(p, 19_999)).toThrow(FileTooLargeError);
  });

  it('refuses a database in a folder every user can write to', async () => {
    const shared = join(tmp.dir, 'shared');
    mkdirSync(shared);
    chmodSync(shared, 0o1777);
    const c = daemonConfig(shared, 'shared', { sensors: [] });
    const r = await runCli(['record', ...c.args, '--amount', '1']);
    expect(r.code).toBe(73);
    expect(r.stderr).toMatch(/writable by every user/);
    expect(existsSync(c.db)).toBe(false);
  });

  it('creates the control socket 0660 without changing what a link there points to', async () => {
    const dir = join(tmp.dir, 'sockdir');
    mkdirSync(dir);
    const victim = join(tmp.dir, 'victim');
    writeFileSync(victim, 'secret');
    chmodSync(victim, 0o600);
    const path = join(dir, 'ctl.sock');
    const server = new ControlServer(path, { ping: () => 1, online: () => 1, offline: () => 1, status: () => 1, sync: () => 1, requeue: () => 1, record: () => 1, nudge: () => 1 }, silentLogger());
    // a link planted where the socket goes is replaced, never followed
    symlinkSync(victim, path);
    await server.start();
    try {
      expect(statSync(path).isSocket()).toBe(true);
      expect(statSync(path).mode & 0o777).toBe(0o660);
      expect(statSync(victim).mode & 0o777).toBe(0o600);
    } finally {
      await server.stop();
    }
  });
});

describe('what a device sends, on an operator terminal', () => {
  it('watch shows escape sequences as text', () => {
    const line = formatWatchEvent({ type: 'status', device: 'dev\u001b]0;owned\u0007', at: 0, status: { state: 'offline', reason: '\u001b[2J\u001b[31mred\u009b1m\u202eevil' } });
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    expect(line).toContain('\\u{1b}[2J');
    expect(printable('a\u0000b')).toBe('a\\u{0}b');
    const json = printableJson({ reason: '\u009b31m\u001b' });
    expect(json).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(JSON.parse(json)).toEqual({ reason: '\u009b31m\u001b' });
  });
});
