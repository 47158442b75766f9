import { afterAll, describe, expect, it } from 'vitest';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { Store } from '../src/store/store.js';
import { Daemon } from '../src/daemon.js';
import { parseConfig } from '../src/config/load.js';
import { DiskGuard } from '../src/store/disk-guard.js';
import { Retention } from '../src/store/retention.js';
import { silentLogger } from '../src/util/logger.js';
import { mosquittoForTests } from './helpers/mosquitto.js';
import { FaultProxy } from './helpers/proxy.js';
import { Ledger } from './helpers/subscriber.js';
import { fill } from './helpers/stack.js';
import { makeTmp } from './helpers/tmp.js';
import { daemonConfig, sqlValue } from './helpers/daemon-config.js';
import { CLI, runCli, spawnCli, waitFor } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);
let n = 0;
const newStore = () => new Store(join(tmp.dir, `g${++n}.db`));
const unsynced = (s: Store) => s.db.prepare('SELECT count(*) FROM transactions WHERE synced = 0').pluck().get() as number;

/** Checks until the guard says it is done (each check does a bounded slice), adding up what was done. */
function checkAll(g: DiskGuard, protect?: [number, number]) {
  let calls = 0;
  let dropped = 0;
  let syncedDeleted = 0;
  for (;;) {
    const r = g.check(protect);
    calls++;
    dropped += r.dropped;
    syncedDeleted += r.syncedDeleted;
    if (!r.more || calls > 1000) return { ...r, dropped, syncedDeleted, calls };
  }
}

describe('disk guard', () => {
  it('deletes synced rows first, whatever their age, to get under the cap', () => {
    const s = newStore();
    fill(s, 30_000, 5000);
    s.markSynced(Array.from({ length: 25_000 }, (_, i) => i + 1));
    const cap = Math.floor(s.fileBytes() * 0.5);
    const g = new DiskGuard(s, { maxDatabaseBytes: cap, minFreeDiskBytes: 0, onFull: 'drop-oldest' }, silentLogger());
    const r = checkAll(g);
    expect(r.dropped).toBe(0);
    expect(r.syncedDeleted).toBeGreaterThan(0);
    expect(s.fileBytes()).toBeLessThanOrEqual(cap);
    expect(unsynced(s)).toBe(5000); // every pending row kept
    s.close();
  });

  it('drop-oldest: drops the oldest unsynced rows, never those in flight nor the newest, counts and remembers them', () => {
    const s = newStore();
    fill(s, 40_000, 5000);
    const cap = Math.floor(s.fileBytes() * 0.5);
    const g = new DiskGuard(s, { maxDatabaseBytes: cap, minFreeDiskBytes: 0, onFull: 'drop-oldest' }, silentLogger());
    const r = checkAll(g, [1, 500]); // seq 1-500 are in flight
    expect(r.dropped).toBeGreaterThan(5000);
    expect(s.fileBytes()).toBeLessThanOrEqual(cap);
    const left = s.db.prepare('SELECT seq FROM transactions ORDER BY seq').pluck().all() as number[];
    expect(left.slice(0, 500)).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
    expect(left.at(-1)).toBe(40_000);
    const drops = s.unannouncedDrops();
    expect(drops.reduce((a, d) => a + d.count, 0)).toBe(r.dropped);
    expect(drops[0]).toMatchObject({ fromSeq: 501, reason: 'database cap' });
    expect(Number(s.getConfig('dropped_total'))).toBe(r.dropped);
    expect(left.length + r.dropped).toBe(40_000);
    s.markDropsAnnounced(drops.map((d) => d.id));
    expect(s.unannouncedDrops()).toEqual([]);
    s.close();
  });

  it('works in bounded slices: a database far over its cap comes down over several checks, never dropping more than needed', () => {
    const s = newStore();
    fill(s, 60_000, 5000);
    s.markSynced(Array.from({ length: 40_000 }, (_, i) => i + 1));
    // under what the 20,000 pending rows take once the synced ones are gone (the pages a marking
    // pass split were half empty: a fifth of this file would hold them all)
    const cap = Math.floor(s.fileBytes() * 0.12);
    const g = new DiskGuard(s, { maxDatabaseBytes: cap, minFreeDiskBytes: 0, onFull: 'drop-oldest', sliceMs: 0 }, silentLogger());
    const first = g.check();
    // a slice of no time still does one chunk (of at most a twentieth of the cap, so that the WAL
    // of a delete cannot push the file over the cap), and says there is more to do
    expect(first.syncedDeleted).toBeGreaterThan(0);
    expect(first.syncedDeleted * 100).toBeLessThan(cap / 20 * 1.5); // rows are a little over 100 bytes here
    expect(first.more).toBe(true);
    const r = checkAll(g);
    expect(r.calls).toBeGreaterThan(5);
    expect(r.more).toBe(false);
    expect(s.fileBytes()).toBeLessThanOrEqual(cap);
    // synced rows went first, all of them, then only as many pending ones as the cap needed
    expect(s.db.prepare('SELECT count(*) FROM transactions WHERE synced = 1').pluck().get()).toBe(0);
    const left = unsynced(s);
    expect(left + r.dropped).toBe(20_000);
    expect(s.fileBytes()).toBeGreaterThan(cap * 0.75); // not emptied: down to about the low-water mark
    s.close();
  });

  it('stop-sampling: refuses new readings while full, resumes with room', () => {
    const s = newStore();
    fill(s, 20_000, 5000);
    // the cap below what the rows themselves take (a WAL the guard can truncate would not do)
    s.db.pragma('wal_checkpoint(TRUNCATE)');
    const cap = Math.floor(s.fileBytes() * 0.8);
    const g = new DiskGuard(s, { maxDatabaseBytes: cap, minFreeDiskBytes: 0, onFull: 'stop-sampling' }, silentLogger());
    expect(g.check().accepting).toBe(false);
    expect(unsynced(s)).toBe(20_000); // nothing dropped
    s.markSynced(Array.from({ length: 15_000 }, (_, i) => i + 1));
    expect(checkAll(g).accepting).toBe(true); // in as many slices as a slow machine needs
    s.close();
  });

  it('stop-sampling: refused readings get seqs of their own and one growing, announceable range per stretch', () => {
    const s = newStore();
    fill(s, 100, 100);
    expect(s.recordRefused(10, 'storage full (stop-sampling)', 1000)).toEqual([101, 110]);
    expect(s.recordRefused(5, 'storage full (stop-sampling)', 2000)).toEqual([111, 115]);
    // a reading stored afterwards comes after the gap, also from another writer (a CLI record)
    const other = new Store(s.path);
    expect(other.append([{ sensor: 'manual', value: 1, unit: null }]).firstSeq).toBe(116);
    other.close();
    expect(s.append([{ sensor: 'sim', value: 2, unit: 'C' }]).firstSeq).toBe(117);
    expect(s.unannouncedDrops()).toEqual([expect.objectContaining({ fromSeq: 101, toSeq: 115, count: 15, reason: 'storage full (stop-sampling)' })]);
    s.markDropsAnnounced(s.unannouncedDrops().map((d) => d.id));
    // after the announcement a new stretch starts a new range
    expect(s.recordRefused(3, 'storage full (stop-sampling)', 3000)).toEqual([118, 120]);
    expect(s.unannouncedDrops()).toEqual([expect.objectContaining({ fromSeq: 118, toSeq: 120, count: 3 })]);
    expect(s.getConfig('dropped_total')).toBe('18');
    expect(s.stats().lastSeq).toBe(120);
    expect(s.recentLog(10).filter((e) => e.event_type === 'readings_refused').map((e) => e.details)).toEqual([
      { reason: 'storage full (stop-sampling)', fromSeq: 101 },
      { reason: 'storage full (stop-sampling)', fromSeq: 118 },
    ]);
    s.close();
  });

  it('keeps a free-disk watermark', () => {
    const s = newStore();
    fill(s, 10_000, 5000);
    let free = 1_000_000;
    const g = new DiskGuard(s, { maxDatabaseBytes: 0, minFreeDiskBytes: 2_000_000, onFull: 'drop-oldest' }, silentLogger(), () => ({ free, total: 1e9 }));
    const before = s.fileBytes();
    // the guard frees what the file system lacks; simulate the space coming back as the file shrinks
    const r = checkAll(g);
    expect(r.dropped).toBeGreaterThan(0);
    expect(s.unannouncedDrops()[0].reason).toBe('low disk space');
    expect(s.fileBytes()).toBeLessThan(before);
    free = 10_000_000;
    expect(g.check().dropped).toBe(0);
    s.close();
  });

  it('never keeps more than a tenth of a small file system free: a tiny data partition is not emptied', () => {
    const s = newStore();
    fill(s, 5000, 5000);
    // a 64 MB partition with 20 MB free: the default 100 MiB watermark would drop everything
    const g = new DiskGuard(s, { maxDatabaseBytes: 0, minFreeDiskBytes: 100 * 1024 ** 2, onFull: 'drop-oldest' }, silentLogger(), () => ({ free: 20e6, total: 64e6 }));
    expect(g.check().dropped).toBe(0);
    expect(unsynced(s)).toBe(5000);
    s.close();
  });
});

describe('retention', () => {
  it('deletes synced rows older than the age, never pending ones, not even after a clock jump', () => {
    const s = newStore();
    fill(s, 1000, 100);
    const t0 = Date.parse('2026-11-26T10:00:00Z');
    s.markSynced(Array.from({ length: 600 }, (_, i) => i + 1), t0);
    const r = new Retention(s, { syncedMaxAgeMs: 3_600_000, syncLogMaxRows: 100 }, silentLogger());
    expect(r.run(t0 + 60_000).syncedDeleted).toBe(0);
    // the clock jumps ten years ahead: synced rows go, pending rows stay
    expect(r.run(t0 + 10 * 365 * 86_400_000).syncedDeleted).toBe(600);
    expect(unsynced(s)).toBe(400);
    expect(s.stats().lastSeq).toBe(1000);
    s.close();
  });

  it('steps over pending rows at the front and stops at the first young synced row', () => {
    const s = newStore();
    fill(s, 300, 100);
    const t0 = Date.parse('2026-11-26T10:00:00Z');
    s.markSynced(Array.from({ length: 100 }, (_, i) => i + 101), t0); // 101-200 old
    s.markSynced(Array.from({ length: 100 }, (_, i) => i + 201), t0 + 7_200_000); // 201-300 young
    const r = new Retention(s, { syncedMaxAgeMs: 3_600_000, syncLogMaxRows: 100 }, silentLogger());
    expect(r.run(t0 + 3_700_000).syncedDeleted).toBe(100);
    expect(s.db.prepare('SELECT count(*) FROM transactions').pluck().get()).toBe(200);
    s.close();
  });
});

function config(name: string, extra: Record<string, unknown> = {}) {
  return daemonConfig(tmp.dir, name, {
    mqtt: { url: 'mqtt://127.0.0.1:1', topicPrefix: 'dur' },
    sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 20 }],
    ...extra,
  });
}

/** Overwrites bytes in the middle of the file: pages of the table's B-tree become garbage. */
function corrupt(path: string, offset: number, length: number) {
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(length, 0xa5), 0, length, offset);
  closeSync(fd);
}

describe('a damaged database at start', () => {
  it('is moved aside (kept), a fresh one is started, the event recorded, and seq continues', async () => {
    const c = config('damaged');
    const s = new Store(c.db);
    fill(s, 20_000, 5000);
    s.close();
    corrupt(c.db, 4096 * 3, 4096 * 40);
    const d = spawnCli(['run', ...c.args]);
    await waitFor(() => d.logLines().some((l) => l.msg === 'sampling started'), 15_000, 'started on a fresh database');
    await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM transactions') > 0, 10_000, 'readings in the fresh database');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const fatal = d.logLines().find((l) => String(l.msg).startsWith('DATABASE DAMAGED'));
    expect(fatal).toBeDefined();
    const moved = String(fatal!.movedTo);
    expect(existsSync(moved)).toBe(true);
    expect(statSync(moved).size).toBeGreaterThan(100_000);
    const db = new Database(c.db, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const ev = db.prepare("SELECT details FROM sync_log WHERE event_type = 'database_replaced'").pluck().get() as string;
    expect(JSON.parse(ev)).toMatchObject({ movedTo: moved });
    const firstSeq = db.prepare('SELECT min(seq) FROM transactions').pluck().get() as number;
    db.close();
    const lastOld = JSON.parse(ev).lastSeq as number | null;
    if (lastOld !== null) expect(firstSeq).toBeGreaterThan(lastOld);
    expect((await runCli(['log', ...c.args, '--limit', '50'])).stdout).toMatch(/database_replaced .*movedTo=/);
  });

  it('the fresh database carries on the counts: seq floor, losses, and the unsent readings left behind counted as lost', async () => {
    const c = config('carry');
    const s = new Store(c.db);
    fill(s, 3000, 1000);
    s.markSynced(Array.from({ length: 1000 }, (_, i) => i + 1));
    s.addConfigInt('lost_total', 7);
    s.addConfigInt('dropped_total', 3);
    s.close();
    // damage found while running is handled by starting a daemon that replaces the database
    const daemon = new Daemon(parseConfig({ device: { id: 'carry' }, database: { path: c.db }, mqtt: { url: 'mqtt://127.0.0.1:1' }, sensors: [] }), silentLogger(), {
      replaceDatabase: 'test: found damaged',
    });
    await daemon.start();
    expect(daemon.statusPayload().lostTotal).toBe(7 + 3 + 2000);
    await daemon.stop('test');
    const db = new Database(c.db, { readonly: true });
    const cfg = (k: string) => db.prepare('SELECT value FROM config WHERE key = ?').pluck().get(k);
    expect(cfg('lost_total')).toBe('2007');
    expect(cfg('dropped_total')).toBe('3');
    expect(cfg('seq_floor')).toBe('3000');
    const ev = JSON.parse(db.prepare("SELECT details FROM sync_log WHERE event_type = 'database_replaced'").pluck().get() as string);
    expect(ev).toMatchObject({ lastSeq: 3000, pendingLeftBehind: 2000, reason: 'test: found damaged' });
    db.close();
    expect(readdirSync(tmp.dir).some((f) => f.startsWith('carry.db.damaged-'))).toBe(true);
  });

  it('a file with an SQLite header and garbage after it is replaced too (a non-SQLite file is refused: daemon.test.ts)', async () => {
    const c = config('garbage');
    const fd = openSync(c.db, 'w');
    writeSync(fd, Buffer.concat([Buffer.from('SQLite format 3\0', 'latin1'), Buffer.alloc(8192, 0x42)]));
    closeSync(fd);
    const d = spawnCli(['run', ...c.args]);
    await waitFor(() => d.logLines().some((l) => l.msg === 'sampling started'), 15_000, 'started');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    expect(readdirSync(tmp.dir).some((f) => f.startsWith('garbage.db.damaged-'))).toBe(true);
  });
});

function canOpen(path: string): boolean {
  try {
    closeSync(openSync(path, 'r'));
    return true;
  } catch {
    return false;
  }
}

describe('clock without a real-time clock', () => {
  // libfaketime, preloaded into the daemon itself (the faketime wrapper would not pass signals on)
  // the one of this process's architecture: under the arm64 emulation (test/arm64/run.sh) the x86-64
  // one exists too, and the arm64 one is in qemu's sysroot, which qemu 7.2 maps for open() but not stat()
  const multiarch = process.arch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
  const libfaketime = [`/usr/lib/${multiarch}/faketime/libfaketime.so.1`].find((p) => canOpen(p));

  it('the floor is the build time of this copy (dist/build-info.json, written by npm run build)', async () => {
    const built = JSON.parse(readFileSync(join(dirname(CLI), '..', 'build-info.json'), 'utf8')) as { builtAt: string };
    const { CLOCK_FLOOR_MS } = (await import(pathToFileURL(join(dirname(CLI), '..', 'version.js')).href)) as { CLOCK_FLOOR_MS: number };
    expect(Date.parse(built.builtAt)).toBeGreaterThan(Date.now() - 24 * 3600_000 * 365);
    expect(CLOCK_FLOOR_MS).toBe(Math.max(Date.parse(built.builtAt), Date.parse('2026-11-01T00:00:00Z')));
  });

  it.skipIf(!libfaketime)('flags readings taken while the clock is in the past; seq keeps the order', async () => {
    const c = config('clock', { sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *' }] });
    // boot with a clock ten years behind (a Pi before NTP), then a normal clock
    const past = spawnCli(['run', ...c.args], { LD_PRELOAD: libfaketime!, FAKETIME: '-3650d', FAKETIME_DONT_FAKE_MONOTONIC: '1' });
    await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM transactions WHERE flags & 1') >= 2, 15_000, 'readings taken with a clock in the past');
    past.child.kill('SIGTERM');
    expect((await past.exited).code).toBe(0);
    const now = spawnCli(['run', ...c.args]);
    await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM transactions WHERE NOT flags & 1') >= 1, 15_000, 'readings taken with a set clock');
    now.child.kill('SIGTERM');
    expect((await now.exited).code).toBe(0);
    const db = new Database(c.db, { readonly: true });
    const rows = db.prepare('SELECT seq, timestamp, flags FROM transactions ORDER BY seq').all() as Array<{ seq: number; timestamp: string; flags: number }>;
    db.close();
    const flagged = rows.filter((r) => r.flags & 1);
    const normal = rows.filter((r) => !(r.flags & 1));
    expect(flagged.length).toBeGreaterThanOrEqual(2);
    expect(normal.length).toBeGreaterThanOrEqual(1);
    expect(flagged.every((r) => r.timestamp < '2020')).toBe(true);
    // seq orders them as taken, whatever the timestamps say
    expect(Math.max(...flagged.map((r) => r.seq))).toBeLessThan(Math.min(...normal.map((r) => r.seq)));
  });
});

interface DropAnnouncement {
  ranges: Array<[number, number]>;
  count: number;
  reasons: string[];
}

/** The device's drop announcements as they reach the subscriber. */
function dropAnnouncements(ledger: Ledger): DropAnnouncement[] {
  const out: DropAnnouncement[] = [];
  ledger.client.subscribe('dur/+/dropped', { qos: 1 });
  ledger.client.on('message', (topic, buf) => {
    if (topic.endsWith('/dropped')) out.push(JSON.parse(buf.toString()) as DropAnnouncement);
  });
  return out;
}

function announcedCount(dropped: DropAnnouncement[]): number {
  return dropped.reduce((n, m) => n + m.count, 0);
}

/** Every seq up to lastSeq: announced as dropped, or else received or still in the database; never both, never neither. */
function accountFor(lastSeq: number, dropped: DropAnnouncement[], ledger: Ledger, inDb: Set<number>) {
  const announced = new Set<number>();
  for (const m of dropped) for (const [a, b] of m.ranges) for (let q = a; q <= b; q++) announced.add(q);
  const received = new Set(ledger.seqs.flat());
  let unexplained = 0;
  let both = 0;
  for (let q = 1; q <= lastSeq; q++) {
    const a = announced.has(q);
    if (a && (received.has(q) || inDb.has(q))) both++;
    if (!a && !received.has(q) && !inDb.has(q)) unexplained++;
  }
  return { announced: announced.size, unexplained, both };
}

describe('a daemon fed faster than its uplink', () => {
  const mosq = mosquittoForTests(join(tmp.dir, 'mosq'));

  it('stays within its disk cap, drops the oldest, and accounts for every seq exactly', async () => {
    const proxy = await new FaultProxy(mosq.port).listen();
    proxy.uplinkBytesPerSec = 20_000; // ~150 readings/s of JSON against 1,500/s sampled
    const ledger = await Ledger.start(mosq.url, 'dur/+/readings');
    const dropped = dropAnnouncements(ledger);
    const cap = 1_500_000;
    const c = config('flood', {
      mqtt: { url: proxy.url, topicPrefix: 'dur', keepaliveSec: 60 },
      sync: { batchSize: 100, maxInFlight: 2, intervalMs: 100, publishTimeoutMs: 20_000, shutdownTimeoutMs: 2000 },
      retention: { maxDatabaseBytes: cap, minFreeDiskBytes: 0, checkIntervalMs: 250 },
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 1500 }],
    });
    const d = spawnCli(['run', ...c.args]);
    // the size, watched while the flood goes on, until the guard has dropped many ticks' worth
    let maxSize = 0;
    const size = (f: string) => (existsSync(f) ? statSync(f).size : 0);
    await waitFor(
      () => {
        maxSize = Math.max(maxSize, size(c.db) + size(`${c.db}-wal`));
        return existsSync(c.db) && sqlValue(c.db, "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM config WHERE key = 'dropped_total'), 0)") >= 15_000;
      },
      60_000,
      'the flood to overrun the cap',
      100,
    );
    // the link comes back to full speed: the backlog drains and the drops are announced
    proxy.uplinkBytesPerSec = 0;
    await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM dropped WHERE announced_at IS NULL') === 0, 30_000, 'every drop announced');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    // the cap holds: the guard looks after every write and keeps room for the next one, however
    // late its timer runs on a busy machine
    expect(maxSize).toBeLessThanOrEqual(cap);
    const db = new Database(c.db, { readonly: true });
    const droppedTotal = Number(db.prepare("SELECT value FROM config WHERE key = 'dropped_total'").pluck().get());
    const lastSeq = db.prepare('SELECT max(seq) FROM transactions').pluck().get() as number;
    const inDb = new Set(db.prepare('SELECT seq FROM transactions').pluck().all() as number[]);
    const unannounced = db.prepare('SELECT count(*) FROM dropped WHERE announced_at IS NULL').pluck().get() as number;
    db.close();
    expect(droppedTotal).toBeGreaterThan(5000);
    expect(unannounced).toBe(0);
    // marked announced on PUBACK: the subscriber's copy may arrive a moment later
    await waitFor(() => announcedCount(dropped) >= droppedTotal, 10_000, 'every announcement at the subscriber');
    // every seq is accounted for exactly once: received, still in the database, or announced as dropped
    expect(accountFor(lastSeq, dropped, ledger, inDb)).toEqual({ announced: droppedTotal, unexplained: 0, both: 0 });
    const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(st.droppedTotal).toBe(droppedTotal);
    expect(st.lostTotal).toBeGreaterThanOrEqual(droppedTotal);
    await ledger.stop();
    await proxy.close();
  });

  it('stop-sampling: at the cap new readings are refused, given seqs, counted and announced; nothing stored is dropped', async () => {
    const proxy = await new FaultProxy(mosq.port).listen();
    proxy.refuse(true); // the broker out of reach: the backlog grows to the cap
    const ledger = await Ledger.start(mosq.url, 'dur/+/readings');
    const dropped = dropAnnouncements(ledger);
    const cap = 1_000_000;
    const c = config('refuse', {
      mqtt: { url: proxy.url, topicPrefix: 'dur', connectTimeoutMs: 500 },
      sync: { batchSize: 200, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 5000, shutdownTimeoutMs: 2000, retry: { initialDelayMs: 100, maxDelayMs: 300 } },
      retention: { maxDatabaseBytes: cap, minFreeDiskBytes: 0, checkIntervalMs: 250, onFull: 'stop-sampling' },
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 1000 }],
    });
    const d = spawnCli(['run', ...c.args]);
    await waitFor(() => d.logLines().some((l) => /not storing new readings/.test(String(l.msg))), 30_000, 'the cap reached');
    await waitFor(() => sqlValue(c.db, "SELECT coalesce((SELECT CAST(value AS INTEGER) FROM config WHERE key = 'dropped_total'), 0)") >= 2000, 15_000, 'a few ticks refused');
    proxy.refuse(false);
    await waitFor(() => dropped.length > 0, 20_000, 'the refused ranges announced');
    // refusals that go on after the link is back are announced together, within 5 s
    await waitFor(() => sqlValue(c.db, 'SELECT count(*) FROM dropped WHERE announced_at IS NULL') === 0, 20_000, 'every refused range announced');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const db = new Database(c.db, { readonly: true });
    const droppedTotal = Number(db.prepare("SELECT value FROM config WHERE key = 'dropped_total'").pluck().get());
    const deletedUnsynced = db.prepare("SELECT count(*) FROM sync_log WHERE event_type = 'readings_dropped'").pluck().get() as number;
    const lastSeq = db.prepare('SELECT max(max(seq), (SELECT CAST(value AS INTEGER) FROM config WHERE key = \'seq_floor\')) FROM transactions').pluck().get() as number;
    const inDb = new Set(db.prepare('SELECT seq FROM transactions').pluck().all() as number[]);
    db.close();
    expect(deletedUnsynced).toBe(0); // stop-sampling never deletes a stored reading
    expect(droppedTotal).toBeGreaterThanOrEqual(2000); // whole ticks of 1,000
    expect(droppedTotal % 1000).toBe(0);
    expect(dropped.every((m) => m.reasons.includes('storage full (stop-sampling)'))).toBe(true);
    // every seq is accounted for exactly once: received, still in the database, or announced as dropped
    expect(accountFor(lastSeq, dropped, ledger, inDb)).toEqual({ announced: droppedTotal, unexplained: 0, both: 0 });
    const st = JSON.parse((await runCli(['status', ...c.args, '--json'])).stdout);
    expect(st.droppedTotal).toBe(droppedTotal);
    await ledger.stop();
    await proxy.close();
  });
});
