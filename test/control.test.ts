import { describe, expect, it } from 'vitest';
import { parseRequest, REQUESTS } from '../src/control/protocol.js';
import { controlHandlers, SyncRequests, type HandlerParts } from '../src/control/handlers.js';
import type { SyncReport } from '../src/sync/sync-loop.js';
import { silentLogger } from '../src/util/logger.js';

const line = (v: unknown) => JSON.stringify(v);

describe('control protocol: parseRequest', () => {
  it('accepts every command, with its arguments defaulted when absent', () => {
    // record's values are judged by its handler (manualReadingProblems, as the CLI's record)
    for (const cmd of Object.keys(REQUESTS).filter((c) => c !== 'record')) {
      expect(parseRequest(line({ cmd })), cmd).toEqual({ cmd, args: {} });
      expect(parseRequest(line({ cmd, args: {} })), cmd).toEqual({ cmd, args: {} });
    }
    expect(Object.keys(REQUESTS).sort()).toEqual(['nudge', 'offline', 'online', 'ping', 'record', 'requeue', 'status', 'sync']);
    expect(parseRequest(line({ cmd: 'record', args: { amount: 1, note: 'x' } }))).toMatchObject({ error: /bad arguments for record/ });
  });

  it('passes checked arguments through', () => {
    expect(parseRequest(line({ cmd: 'sync', args: { timeoutMs: 2500 } }))).toEqual({ cmd: 'sync', args: { timeoutMs: 2500 } });
    expect(parseRequest(line({ cmd: 'requeue', args: { ids: ['a', 'b'] } }))).toEqual({ cmd: 'requeue', args: { ids: ['a', 'b'] } });
  });

  it('refuses bad arguments, naming the argument', () => {
    const bad: Array<[unknown, RegExp]> = [
      [{ cmd: 'sync', args: { timeoutMs: 50 } }, /bad arguments for sync: timeoutMs/],
      [{ cmd: 'sync', args: { timeoutMs: 600_001 } }, /bad arguments for sync: timeoutMs/],
      [{ cmd: 'sync', args: { timeoutMs: 1000.5 } }, /bad arguments for sync: timeoutMs/],
      [{ cmd: 'sync', args: { timeoutMs: '1000' } }, /bad arguments for sync: timeoutMs/],
      [{ cmd: 'sync', args: { timeout: 1000 } }, /bad arguments for sync/],
      [{ cmd: 'requeue', args: { ids: 'a,b' } }, /bad arguments for requeue: ids/],
      [{ cmd: 'requeue', args: { ids: [''] } }, /bad arguments for requeue: ids/],
      [{ cmd: 'requeue', args: { ids: ['x'.repeat(65)] } }, /bad arguments for requeue: ids/],
      [{ cmd: 'requeue', args: { ids: [1] } }, /bad arguments for requeue: ids/],
      [{ cmd: 'ping', args: { extra: true } }, /bad arguments for ping/],
      [{ cmd: 'status', args: null }, /bad arguments for status/],
      [{ cmd: 'status', args: [] }, /bad arguments for status/],
      [{ cmd: 'nudge', args: { now: true } }, /bad arguments for nudge/],
    ];
    for (const [req, message] of bad) expect(parseRequest(line(req)), line(req)).toEqual({ error: expect.stringMatching(message) });
  });

  it('knows only its own command names, never an inherited one', () => {
    for (const cmd of ['toString', '__proto__', 'constructor', 'hasOwnProperty', 'valueOf', 'shutdown', '', 'PING']) {
      expect(parseRequest(line({ cmd })), cmd).toEqual({ error: expect.stringMatching(/^unknown command/) });
    }
    // a JSON text that names __proto__ as an own key
    expect(parseRequest('{"cmd":"__proto__","args":{}}')).toEqual({ error: expect.stringMatching(/^unknown command/) });
    expect(parseRequest(line({ cmd: 42 }))).toEqual({ error: 'unknown command number' });
    expect(parseRequest(line({}))).toEqual({ error: 'unknown command undefined' });
  });

  it('answers any JSON value, and text that is not JSON, with an error instead of throwing', () => {
    for (const v of [null, 0, -1.5, true, false, 'ping', [], ['ping'], [{ cmd: 'ping' }]]) {
      expect(parseRequest(line(v)), line(v)).toEqual({ error: expect.stringMatching(/^malformed request: expected a JSON object/) });
    }
    for (const text of ['', 'ping', '{', '{"cmd":"ping"', 'null null', '\u0000']) {
      expect(parseRequest(text), text).toEqual({ error: 'malformed request: expected one JSON object per line' });
    }
    expect(parseRequest(line({ cmd: 'ping', admin: true }))).toEqual({ error: 'malformed request: unknown field "admin"' });
  });

  it('cuts what it echoes of a long name', () => {
    const r = parseRequest(line({ cmd: 'x'.repeat(10_000) })) as { error: string };
    expect(r.error.length).toBeLessThan(80);
  });
});

/** The daemon's parts the handlers talk to, as plain objects that record what they were asked. */
function fakeParts(over: { offline?: boolean; connected?: boolean; lastError?: string } = {}) {
  const calls: string[] = [];
  let release: (r: SyncReport) => void = () => {};
  const parts: HandlerParts = {
    status: {
      live: () => ({ pid: 1, version: 't', link: 'online', lastError: null, uptimeS: 5, inFlightBatches: 0, window: 8 }),
      linkView: () => (over.offline ? 'offline-by-choice' : 'online'),
    },
    mode: { offlineByChoice: over.offline ?? false, set: async (online) => void calls.push(`mode ${online}`) },
    store: {
      countPending: () => 7,
      requeue: (ids) => (ids ? ids.length : 3),
      logEvent: (type) => void calls.push(`event ${type}`),
    },
    sync: {
      syncNow: (timeoutMs, skipBackoff) => {
        calls.push(`syncNow ${timeoutMs} ${skipBackoff}`);
        return new Promise<SyncReport>((r) => (release = r));
      },
      rewind: () => void calls.push('rewind'),
      nudge: () => void calls.push('nudge'),
    },
    link: { connected: over.connected ?? true, lastError: over.lastError, connectNow: () => void calls.push('connectNow') },
    readings: { appendTicks: (ticks) => void calls.push(`append ${ticks.map((t) => t.readings.map((r) => `${r.sensor}=${r.value}`).join(',')).join(';')}`) },
  };
  return { parts, calls, finish: (r: Partial<SyncReport> = {}) => release({ ok: true, ackedRows: 10, ackedBatches: 1, ...r }) };
}

describe('control handlers', () => {
  it('sync requests that come while one runs share its report', async () => {
    const f = fakeParts();
    const syncs = new SyncRequests(f.parts);
    const a = syncs.request(1000);
    const b = syncs.request(5000);
    expect(f.calls.filter((c) => c.startsWith('syncNow'))).toEqual(['syncNow 1000 true']);
    f.finish();
    const [ra, rb] = await Promise.all([a, b]);
    expect(ra).toBe(rb);
    expect(ra).toMatchObject({ ok: true, ackedRows: 10, pendingLeft: 7 });
    // the next request is a round of its own
    const c = syncs.request(1000);
    expect(f.calls.filter((x) => x.startsWith('syncNow'))).toHaveLength(2);
    f.finish();
    await c;
  });

  it('skips the backoff three times at once, then waits for the round as it comes (rate-limited)', async () => {
    const f = fakeParts();
    const syncs = new SyncRequests(f.parts);
    const reports: SyncReport[] = [];
    for (let i = 0; i < 5; i++) {
      const p = syncs.request(1000);
      f.finish();
      reports.push(await p);
    }
    expect(f.calls.filter((c) => c.startsWith('syncNow'))).toEqual(['syncNow 1000 true', 'syncNow 1000 true', 'syncNow 1000 true', 'syncNow 1000 false', 'syncNow 1000 false']);
    expect(f.calls.filter((c) => c === 'connectNow')).toHaveLength(3);
    expect(reports.map((r) => r.rateLimited ?? false)).toEqual([false, false, false, true, true]);
  });

  it('says why not: offline by choice, or the broker unreachable', async () => {
    const off = fakeParts({ offline: true });
    expect(await new SyncRequests(off.parts).request(1000)).toEqual({ ok: false, ackedRows: 0, ackedBatches: 0, pendingLeft: 7, reason: 'offline by choice (run edge-sensor online first)' });
    expect(off.calls).toEqual([]);
    const down = fakeParts({ connected: false, lastError: 'ECONNREFUSED' });
    const p = new SyncRequests(down.parts).request(1000);
    down.finish({ ok: false, ackedRows: 0, ackedBatches: 0, reason: 'not connected to the broker' });
    expect(await p).toMatchObject({ ok: false, reason: 'cannot reach broker: ECONNREFUSED' });
  });

  it('ping, mode changes and requeue', async () => {
    const f = fakeParts();
    const h = controlHandlers(f.parts, silentLogger());
    expect(h.ping()).toEqual({ pid: 1, version: 't', link: 'online', uptimeS: 5 });
    expect(await h.offline()).toEqual({ link: 'online' });
    expect(await h.online()).toEqual({ link: 'online' });
    expect(h.requeue({ ids: ['a', 'b'] })).toEqual({ requeued: 2 });
    expect(h.requeue({})).toEqual({ requeued: 3 });
    expect(f.calls).toEqual(['mode false', 'mode true', 'event rows_requeued', 'rewind', 'event rows_requeued', 'rewind']);
    expect(h.status()).toMatchObject({ pid: 1, window: 8 });
  });
});
