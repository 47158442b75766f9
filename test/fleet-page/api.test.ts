import { mkdtempSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bucketFor, withBreaks } from '../../src/collector/http/api.js';
import { parseCollectorConfig, resolveCollectorSecrets } from '../../src/collector/config.js';
import { fleetJson, fleetRows } from '../../src/collector/fleet-report.js';
import { FleetPageServer } from '../../src/collector/http/server.js';
import { createLogger } from '../../src/util/logger.js';
import { DROPPED_HOLE, fleetFixture, N, OPEN_HOLE, startPage, STEP_MS, XSS_DEVICE } from './fixture.js';

let fx: Awaited<ReturnType<typeof fleetFixture>>;
let page: { server: FleetPageServer; base: string };
beforeAll(async () => {
  fx = await fleetFixture();
  page = await startPage(fx.st);
});
afterAll(async () => {
  await page?.server.stop();
  await fx?.cleanup();
});

type Json = any;

async function get(path: string, init: RequestInit = {}): Promise<{ status: number; headers: Headers; body: Json }> {
  const r = await fetch(page.base + path, { ...init, signal: AbortSignal.timeout(10_000) });
  return { status: r.status, headers: r.headers, body: r.headers.get('content-type')?.startsWith('application/json') ? await r.json() : await r.text() };
}

describe('the fleet page API', () => {
  it('lists every device with the fleet report\'s numbers, troubled ones marked', async () => {
    const { status, body } = await get('/api/devices');
    expect(status).toBe(200);
    const snapshot = await fx.st.fleet();
    const expected = fleetRows(snapshot);
    expect(body.rejectedMessages).toEqual(JSON.parse(fleetJson(snapshot)).rejectedMessages);
    expect(body.rejectedMessages).toEqual({ 'invalid-json': 1 });
    expect(body.devices.map((d: { device: string }) => d.device)).toEqual(expected.map((d) => d.device));
    for (const [i, d] of body.devices.entries()) {
      const { lastSeenAgoMs, lagMs, trouble, ...rest } = d;
      const { lastSeenAgoMs: e1, lagMs: e2, ...want } = expected[i];
      // the same rows; ages move with the clock between the two reads
      expect(rest).toEqual(want);
      if (e2 !== null) expect(Math.abs(lagMs - e2)).toBeLessThan(5000);
      if (e1 !== null) expect(Math.abs(lastSeenAgoMs - e1)).toBeLessThan(5000);
      expect(Array.isArray(trouble)).toBe(true);
    }
    const by = Object.fromEntries(body.devices.map((d: { device: string; trouble: string[] }) => [d.device, d.trouble]));
    expect(by['pi-kitchen']).toEqual(['gaps']);
    expect(by['pi-garage']).toEqual(['offline', 'lag', 'backlog']);
    expect(by[XSS_DEVICE]).toEqual([]);
    const kitchen = body.devices.find((d: { device: string }) => d.device === 'pi-kitchen');
    expect(kitchen.openGaps).toEqual({ ranges: 1, readings: 2 * (OPEN_HOLE[1] - OPEN_HOLE[0] + 1) });
    expect(kitchen.droppedAnnounced).toBe(2 * (DROPPED_HOLE[1] - DROPPED_HOLE[0] + 1));
  });

  it("a device: its row, its sensors with units, its gaps", async () => {
    const { status, body } = await get('/api/devices/pi-kitchen');
    expect(status).toBe(200);
    expect(body.device.device).toBe('pi-kitchen');
    expect(body.sensors.map((s: { sensor: string; unit: string }) => [s.sensor, s.unit])).toEqual([
      ['humidity', '%'],
      ['temperature', '°C'],
    ]);
    expect(body.gaps.map((g: { from: number; to: number; state: string }) => [g.from, g.to, g.state])).toEqual([
      [2 * OPEN_HOLE[0] + 1, 2 * OPEN_HOLE[1] + 2, 'open'],
      [2 * DROPPED_HOLE[0] + 1, 2 * DROPPED_HOLE[1] + 2, 'dropped'],
    ]);
    expect((await get('/api/devices/nobody')).status).toBe(404);
    // an id with markup and slashes travels percent-encoded and comes back as the same string
    const x = await get(`/api/devices/${encodeURIComponent(XSS_DEVICE)}`);
    expect(x.status).toBe(200);
    expect(x.body.device.device).toBe(XSS_DEVICE);
  });

  it('series: downsampled by PostgreSQL (min/avg/max per bucket), a few hundred points, holes as nulls and gap bands', async () => {
    const to = fx.now + 1000;
    const from = to - N * STEP_MS - 60_000;
    const { status, body } = await get(`/api/devices/pi-kitchen/series?sensor=temperature&from=${from}&to=${to}`);
    expect(status).toBe(200);
    expect(body.bucketMs).toBe(bucketFor(to - from));
    expect(body.bucketMs).toBe(300_000);
    const pts: Array<[number, number | null, number | null, number | null, number]> = body.points;
    expect(pts.length).toBeLessThanOrEqual(300);
    const real = pts.filter((p) => p[4] > 0);
    // 4 min readings in 5 min buckets: one or two per bucket, and min <= avg <= max
    expect(real.reduce((a, p) => a + p[4], 0)).toBe(N - (OPEN_HOLE[1] - OPEN_HOLE[0] + 1) - (DROPPED_HOLE[1] - DROPPED_HOLE[0] + 1));
    for (const p of real) expect(p[1]! <= p[2]! && p[2]! <= p[3]!).toBe(true);
    // exactly the two holes are breaks, each placed inside its hole
    const breaks = pts.filter((p) => p[4] === 0);
    expect(breaks).toHaveLength(2);
    const startMs = fx.now - N * STEP_MS;
    expect(breaks[0][0]).toBeGreaterThanOrEqual(startMs + (OPEN_HOLE[0] - 1) * STEP_MS);
    expect(breaks[0][0]).toBeLessThan(startMs + (OPEN_HOLE[1] + 1) * STEP_MS);
    expect(breaks[1][0]).toBeGreaterThanOrEqual(startMs + (DROPPED_HOLE[0] - 1) * STEP_MS);
    expect(breaks[1][0]).toBeLessThan(startMs + (DROPPED_HOLE[1] + 1) * STEP_MS);
    // the gaps placed in time by the readings around them
    expect(body.gaps.map((g: { state: string }) => g.state)).toEqual(['open', 'dropped']);
    const open = body.gaps[0];
    expect(open.afterMs).toBe(startMs + (OPEN_HOLE[0] - 1) * STEP_MS);
    expect(open.beforeMs).toBe(startMs + (OPEN_HOLE[1] + 1) * STEP_MS);
    // a window before any reading: no points, no bands
    const empty = await get(`/api/devices/pi-kitchen/series?sensor=temperature&from=${from - 86_400_000}&to=${from - 3_600_000}`);
    expect(empty.body.points).toEqual([]);
    expect(empty.body.gaps).toEqual([]);
  });

  it('a 7-day window has hour buckets at most 168 of them; bad parameters are refused with 400', async () => {
    const to = Date.now();
    const { body } = await get(`/api/devices/pi-kitchen/series?sensor=humidity&from=${new Date(to - 7 * 86_400_000).toISOString()}&to=${new Date(to).toISOString()}`);
    expect(body.bucketMs).toBe(3_600_000);
    expect(body.points.length).toBeLessThanOrEqual(168);
    expect(body.points.filter((p: number[]) => p[4] > 0).reduce((a: number, p: number[]) => a + p[4], 0)).toBe(N - 70);
    for (const q of ['', '?sensor=', '?sensor=t&from=yesterday', '?sensor=t&from=2000&to=1000', `?sensor=t&from=0&to=${500 * 86_400_000}`, `?sensor=${'x'.repeat(300)}`]) {
      const r = await get(`/api/devices/pi-kitchen/series${q}`);
      expect(r.status, q).toBe(400);
      expect(r.body.error).toMatch(/expected/);
    }
  });

  it('backlog: the status history per bucket', async () => {
    const to = Date.now();
    const { body } = await get(`/api/devices/pi-kitchen/backlog?from=${to - 3_600_000 * 25}&to=${to + 1000}`);
    expect(body.points.length).toBeGreaterThan(60);
    expect(Math.max(...body.points.map((p: number[]) => p[1]))).toBe(400);
    // the live status written by the fixture was sampled too (pending 12, at write time)
    expect(body.points.at(-1)[1]).toBe(12);
    const retainedOnly = await fx.q<{ n: number }>("SELECT count(*)::int AS n FROM status_samples WHERE device = 'pi-garage'");
    expect(retainedOnly[0].n).toBe(1);
  });

  it('read-only, with security headers; unknown paths 404; HEAD has no body', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH']) {
      const r = await get('/api/devices', { method });
      expect(r.status, method).toBe(405);
      expect(r.headers.get('allow')).toBe('GET, HEAD');
    }
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-security-policy')).toMatch(/script-src 'self';.*frame-ancestors 'none'/);
    expect(r.headers.get('content-security-policy')).not.toMatch(/unsafe-inline/);
    expect(r.headers.get('x-content-type-options')).toBe('nosniff');
    expect(r.body).toMatch(/<script src="\/static\/fleet.js" type="module"><\/script>/);
    expect(r.body).not.toMatch(/<script>/);
    expect((await get('/static/uPlot.iife.min.js')).body).toMatch(/uPlot/);
    expect((await get('/static/../package.json')).status).toBe(404);
    expect((await get('/etc/passwd')).status).toBe(404);
    const head = await fetch(page.base + '/api/devices', { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(await head.text()).toBe('');
  });

  it('on loopback, a Host header that is not a loopback name is refused (DNS rebinding)', async () => {
    const status = await new Promise<number>((resolve, reject) => {
      const u = new URL(page.base);
      const req = request({ host: u.hostname, port: u.port, path: '/api/devices', headers: { Host: `evil.example:${u.port}` }, timeout: 5000 }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      req.end();
    });
    expect(status).toBe(421);
  });
});

describe('the fleet page: auth', () => {
  it('basic: 401 with a challenge without or with wrong credentials, 200 with the right ones', async () => {
    const p = await startPage(fx.st, { auth: { type: 'basic', user: 'ops', passwordFile: '/unused' }, secret: 's3cret' });
    try {
      const none = await fetch(p.base + '/api/devices');
      expect(none.status).toBe(401);
      expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm=/);
      const basic = (u: string, pw: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${pw}`).toString('base64')}` });
      expect((await fetch(p.base + '/api/devices', { headers: basic('ops', 'wrong') })).status).toBe(401);
      expect((await fetch(p.base + '/', { headers: basic('root', 's3cret') })).status).toBe(401);
      const ok = await fetch(p.base + '/api/devices', { headers: basic('ops', 's3cret') });
      expect(ok.status).toBe(200);
      expect(((await ok.json()) as Json).devices.length).toBeGreaterThan(0);
    } finally {
      await p.server.stop();
    }
  });

  it('bearer: the token from its file, read through the config like every secret', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'es-fp-'));
    writeFileSync(join(dir, 'token'), 'tok-123\n', { mode: 0o600 });
    const cfg = parseCollectorConfig({ postgres: {}, http: { listen: '127.0.0.1:0', auth: { type: 'bearer', tokenFile: join(dir, 'token') } } });
    const secrets = resolveCollectorSecrets(cfg, 'test.yaml', {});
    expect(secrets.httpSecret).toBe('tok-123');
    const p = await startPage(fx.st, { auth: cfg.http.auth, secret: secrets.httpSecret });
    try {
      expect((await fetch(p.base + '/api/devices')).status).toBe(401);
      expect((await fetch(p.base + '/api/devices', { headers: { Authorization: 'Bearer nope' } })).status).toBe(401);
      expect((await fetch(p.base + '/api/devices', { headers: { Authorization: 'Bearer tok-123' } })).status).toBe(200);
    } finally {
      await p.server.stop();
    }
    const missing = parseCollectorConfig({ postgres: {}, http: { listen: '127.0.0.1:0', auth: { type: 'bearer', tokenFile: join(dir, 'nope') } } });
    expect(() => resolveCollectorSecrets(missing, 'test.yaml', {})).toThrow(/http\.auth\.tokenFile/);
  });

  it('answers 503 while the database is unavailable, and goes on serving the page', async () => {
    // a store never opened stands for one whose database is gone: every query is StoreUnavailableError
    const { PgStore } = await import('../../src/collector/pg/store.js');
    const down = new PgStore({ url: fx.url, schema: fx.schema, connectTimeoutMs: 1000, statementTimeoutMs: 1000, lockTimeoutMs: 1000, reorderWindowMs: 5000 }, createLogger('silent'));
    const p = await startPage(down);
    try {
      for (const path of ['/api/devices', '/api/devices/pi-kitchen', '/api/devices/pi-kitchen/series?sensor=temperature']) {
        const r = await fetch(p.base + path);
        expect(r.status, path).toBe(503);
        expect(await r.json()).toEqual({ error: 'database unavailable' });
      }
      expect((await fetch(p.base + '/')).status).toBe(200);
    } finally {
      await p.server.stop();
    }
  });

  it('warns at start when the page is reachable beyond this machine, and says why', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const log = createLogger('info', { write: (l: string) => void lines.push(JSON.parse(l)) });
    for (const auth of [undefined, { type: 'basic' as const, user: 'ops', passwordFile: '/unused' }]) {
      const server = new FleetPageServer({ listen: '0.0.0.0:0', auth, secret: auth && 'pw', requestTimeoutMs: 5000, trouble: { lagMs: 60_000, pending: 10 } }, fx.st, log);
      await server.start();
      await server.stop();
    }
    expect(lines.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([expect.stringMatching(/without http.auth: anyone who can connect reads the fleet/), expect.stringMatching(/plain HTTP: the credentials travel readable/)]);
    lines.length = 0;
    const local = new FleetPageServer({ listen: '127.0.0.1:0', auth: undefined, requestTimeoutMs: 5000, trouble: { lagMs: 60_000, pending: 10 } }, fx.st, log);
    await local.start();
    await local.stop();
    expect(lines.map((l) => l.msg)).toEqual(['fleet page listening']);
  });

  it('config: listen needs a host; off by default', () => {
    expect(parseCollectorConfig({ postgres: {} }).http.listen).toBeUndefined();
    expect(() => parseCollectorConfig({ postgres: {}, http: { listen: '8080' } })).toThrow(/http\.listen/);
    expect(() => parseCollectorConfig({ postgres: {}, http: { listen: '127.0.0.1:70000' } })).toThrow(/http\.listen/);
    expect(parseCollectorConfig({ postgres: {}, http: { listen: '[::1]:8080' } }).http.listen).toBe('[::1]:8080');
  });
});

describe('buckets and breaks', () => {
  it('a window gets a stride near 300 points', () => {
    expect(bucketFor(3_600_000)).toBe(15_000);
    expect(bucketFor(86_400_000)).toBe(300_000);
    expect(bucketFor(7 * 86_400_000)).toBe(3_600_000);
    expect(bucketFor(365 * 86_400_000)).toBe(2 * 86_400_000);
  });

  it('a null point goes where the spacing is well past the usual one, nowhere else', () => {
    const p = (t: number): [number, number, number, number, number] => [t, 1, 1, 1, 1];
    // readings every 15 min in 15 s buckets: sparse data is not a hole
    const sparse = [0, 900, 1800, 2700].map((m) => p(m * 1000));
    expect(withBreaks(sparse, 15_000)).toEqual(sparse);
    const holed = [0, 900, 1800, 9000, 9900].map((m) => p(m * 1000));
    const out = withBreaks(holed, 15_000);
    expect(out).toHaveLength(6);
    expect(out[3]).toEqual([1_800_000 + 15_000, null, null, null, 0]);
  });
});
