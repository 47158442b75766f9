import { mkdirSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';
import { expect, inject } from 'vitest';
import { Mosquitto } from '../../helpers/mosquitto.js';
import { NatsBroker } from '../../helpers/nats.js';
import { FaultProxy } from '../../helpers/proxy.js';
import { Ledger } from '../../helpers/subscriber.js';
import { makeTmp, writeConfig } from '../../helpers/tmp.js';
import { sleep, spawnCli, waitFor, type Spawned } from '../../helpers/process.js';
import { fill } from '../../helpers/stack.js';
import { Store } from '../../../src/store/store.js';
import { mulberry32 } from '../../../src/sensors/simulated.js';
import { writeResult, type ScenarioResult } from './report.js';
import { WireTap } from './wire-tap.js';

export type LogLine = Record<string, unknown>;

// ---------------------------------------------------------------------------------------------
// Campaign settings: FAULT_PROFILE=quick for CI, FAULT_RUNS to override, FAULT_SEED to replay.

export const PROFILE: 'quick' | 'full' = process.env.FAULT_PROFILE === 'quick' ? 'quick' : 'full';

export interface Plan {
  runs: number;
  faultsPerRun: number;
}

/** How many runs of how many faults: the full campaign reaches at least 20 faults per scenario. */
export function plan(full: Plan, quick: Plan): Plan {
  const p = PROFILE === 'quick' ? quick : full;
  const runs = process.env.FAULT_RUNS ? Math.max(1, Number(process.env.FAULT_RUNS)) : p.runs;
  return { runs, faultsPerRun: p.faultsPerRun };
}

/** A backlog big enough to last through the faults of one run (the quick profile has fewer). */
export function backlog(full: number): number {
  return PROFILE === 'quick' ? Math.round(full / 3) : full;
}

/** Seeded randomness: every random moment and duration of a scenario comes from here. */
export class Rng {
  private readonly next: () => number;
  constructor(readonly seed: number) {
    this.next = mulberry32(seed);
  }
  between(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }
  int(lo: number, hi: number): number {
    return Math.floor(this.between(lo, hi + 1));
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

function scenarioSeed(name: string): number {
  let h = 0x811c9dc5;
  for (const c of name) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193) >>> 0;
  return (h ^ inject('faultSeed')) >>> 0;
}

/** Polls fn until it returns a truthy value; unlike waitFor, an exception ends the wait at once. */
export async function until<T>(fn: () => T | undefined | false, timeoutMs: number, what: string, stepMs = 25): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(stepMs);
  }
}

// ---------------------------------------------------------------------------------------------

/** The real daemon (`dist/cli/main.js run`) as a child process, across restarts. */
export class DaemonProc {
  readonly lives: Array<{ config: string; proc: Spawned }> = [];

  get current(): Spawned | undefined {
    return this.lives.at(-1)?.proc;
  }

  get running(): boolean {
    const c = this.current?.child;
    return !!c && c.exitCode === null && c.signalCode === null;
  }

  /** Starts a daemon and waits until it is sampling, or connected to the broker. */
  async start(config: string, until: 'sampling' | 'connected' = 'connected', timeoutMs = 30_000): Promise<void> {
    if (this.running) throw new Error('daemon already running');
    this.lives.push({ config, proc: spawnCli(['run', '--config', config]) });
    await this.waitLog((l) => l.msg === (until === 'connected' ? 'connected to broker' : 'sampling started'), timeoutMs, until);
  }

  lines(): LogLine[] {
    return this.current?.logLines() ?? [];
  }

  count(pred: (l: LogLine) => boolean): number {
    return this.lines().filter(pred).length;
  }

  /** Waits for the n-th log line (1-based) of the current daemon that matches; fails at once if it exited. */
  async waitLog(pred: (l: LogLine) => boolean, timeoutMs: number, what: string, nth = 1): Promise<LogLine> {
    const cur = this.current!;
    return until(
      () => {
        const hits = cur.logLines().filter(pred);
        if (hits.length >= nth) return hits[nth - 1];
        this.mustRun(cur, what);
        return undefined;
      },
      timeoutMs,
      `daemon: ${what}`,
    );
  }

  /** Waits until the daemon has connected once more than `before` times. */
  reconnected(before: number, timeoutMs = 30_000): Promise<LogLine> {
    return this.waitLog((l) => l.msg === 'connected to broker', timeoutMs, 'reconnect', before + 1);
  }

  connects(): number {
    return this.count((l) => l.msg === 'connected to broker');
  }

  /** Waits until the daemon's last word on its link is "connected to broker". */
  linkUp(timeoutMs: number): Promise<boolean> {
    const cur = this.current!;
    return until(
      () => {
        this.mustRun(cur, 'link up');
        const last = cur.logLines().filter((x) => x.msg === 'connected to broker' || x.msg === 'disconnected from broker').at(-1);
        return last?.msg === 'connected to broker';
      },
      timeoutMs,
      'daemon: link up',
    );
  }

  private mustRun(cur: Spawned, what: string): void {
    if (cur.child.exitCode !== null || cur.child.signalCode !== null) {
      throw new Error(`daemon exited (${cur.child.exitCode ?? cur.child.signalCode}) while waiting for ${what}: ${cur.stderr().slice(-2000)}`);
    }
  }

  async kill9(): Promise<void> {
    const cur = this.current;
    if (!cur || !this.running) return;
    cur.child.kill('SIGKILL');
    await cur.exited;
  }

  /** SIGTERM; resolves with the exit code and how long the stop took (SIGKILL after timeoutMs). */
  async term(timeoutMs = 30_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }> {
    const cur = this.current!;
    const t0 = Date.now();
    if (!this.running) return { ...(await cur.exited), ms: 0 };
    cur.child.kill('SIGTERM');
    const timer = setTimeout(() => cur.child.kill('SIGKILL'), timeoutMs);
    const r = await cur.exited;
    clearTimeout(timer);
    return { ...r, ms: Date.now() - t0 };
  }

  /** The sampler's totals from the "stopped" line of every daemon that stopped cleanly. */
  stoppedTotals(): { written: number; lost: number; stops: number } {
    const t = { written: 0, lost: 0, stops: 0 };
    for (const l of this.lives) {
      for (const line of l.proc.logLines().filter((x) => x.msg === 'stopped')) {
        t.written += Number(line.written ?? 0);
        t.lost += Number(line.lost ?? 0);
        t.stops++;
      }
    }
    return t;
  }

  /** Every daemon's output, for a failure report. */
  dump(): string {
    return this.lives.map((l, i) => `--- daemon ${i} (${l.config}) stdout:\n${l.proc.stdout()}\n--- stderr:\n${l.proc.stderr()}`).join('\n');
  }
}

// ---------------------------------------------------------------------------------------------

/**
 * An independent reader of the daemon's database: every id it sees was committed (WAL makes a
 * transaction visible to other connections only once it is in the log; under FULL, once synced).
 * Together with the final database this is the ledger of what the daemon had committed.
 */
export class CommitReader {
  static readonly CHUNK = 20_000;
  readonly seen = new Map<string, number>();
  private db?: Database.Database;
  private cursor = 0;
  private timer?: NodeJS.Timeout;

  constructor(private path: string) {}

  start(intervalMs = 100): void {
    this.timer ??= setInterval(() => this.poll(), intervalMs);
  }

  /** Everything committed so far. */
  pollAll(): void {
    while (this.poll() === CommitReader.CHUNK);
  }

  /**
   * Reads the rows committed since the last poll, at most CHUNK at a time (this process also runs
   * the fault proxy: a read of a whole new backlog at once would stall the daemon's link); 0 while
   * the database does not exist yet.
   */
  poll(): number {
    try {
      this.db ??= new Database(this.path, { readonly: true, fileMustExist: true });
      const rows = this.db.prepare('SELECT rowid, id FROM transactions WHERE rowid > ? ORDER BY rowid LIMIT ?').raw().all(this.cursor, CommitReader.CHUNK) as Array<[number, string]>;
      for (const [seq, id] of rows) this.seen.set(id, seq);
      if (rows.length > 0) this.cursor = rows[rows.length - 1][0];
      return rows.length;
    } catch {
      return 0;
    }
  }

  /** The seq of the pending row after the oldest n (the newest seq + 1 when there are fewer). */
  horizon(n: number): number {
    this.pollAll();
    const next = this.db?.prepare('SELECT seq FROM transactions WHERE synced = 0 AND parked_at IS NULL ORDER BY seq LIMIT 1 OFFSET ?').pluck().get(n) as number | undefined;
    return next ?? this.cursor + 1;
  }

  pending(): number {
    this.poll();
    // the daemon's partial index: synced = 0 AND parked_at IS NULL
    return this.db ? (this.db.prepare('SELECT count(*) FROM transactions WHERE synced = 0 AND parked_at IS NULL').pluck().get() as number) : -1;
  }

  /** The database moved (a new mount after a power cut): read it from the start again. */
  reopen(path: string): void {
    this.db?.close();
    this.db = undefined;
    this.path = path;
    this.cursor = 0;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.db?.close();
    this.db = undefined;
  }
}

// ---------------------------------------------------------------------------------------------

export interface RunOptions {
  rng: Rng;
  /** folder of the database (a tmpfs or a loop mount); the run's temp folder by default */
  dbDir?: string;
  synchronous?: 'FULL' | 'NORMAL';
  /** database.commitWindowMs (0, the default: every tick committed at once) */
  commitWindowMs?: number;
  /** simulated readings per second */
  perSecond?: number;
  /** pending readings in the database before the daemon starts */
  prefill?: number;
  batchSize?: number;
  maxInFlight?: number;
  publishTimeoutMs?: number;
  /** readings added by inDrain() when the backlog has run low */
  refill?: number;
  /**
   * the broker: Mosquitto (MQTT 5, the default) or NATS with JetStream (MQTT 3.1.1: it stores a
   * QoS 1 message before its PUBACK)
   */
  broker?: 'mosquitto' | 'nats';
}

export interface FaultMark {
  kind: string;
  at: number;
  /** the subscriber's count of resent readings when the fault was injected */
  resentBefore: number;
  /** rows pending then */
  pending: number;
  /** readings batches awaiting their PUBACK on the wire then */
  inFlight: number;
  /** messages the subscriber had received by then */
  messages: number;
}

export interface RunOutcome {
  readings: number;
  /** committed readings that never reached the subscriber and that the broker never acknowledged */
  lost: number;
  /** readings the broker acknowledged (PUBACK on the wire) that never reached the subscriber */
  lostAfterAck: number;
  lostAfterAckRows: Array<{ id: string; seq: number; syncedAt: string | null; ack?: { batch: string; at: number } }>;
  vanished: number;
  unexpected: number;
  duplicates: number;
  resent: number;
  redelivered: number;
  faults: number;
  /**
   * After each fault, up to the next: readings resent, rows pending when it came, and the
   * connections the daemon lost meanwhile (a fault can cost more than one: the late CONNECT of an
   * abandoned attempt takes the session over from the connection that replaced it)
   */
  perFault: Array<{ kind: string; resent: number; pending: number; inFlight: number; losses: number }>;
  integrity: string;
  failures: string[];
  finalRows: number;
  lostIds: string[];
  /** what the final database says about each lost reading */
  lostRows: Array<{ id: string; seq: number } & Partial<FinalRow> & { vanished?: boolean }>;
}

export const DEVICE = 'fault';
/** faults that end the daemon's process without its shutdown */
const KILLS_PROCESS = new Set(['kill -9', 'power cut']);
const PREFIX = 'faults';

/**
 * One run of a scenario: a private Mosquitto (persistent, unlimited queues), optionally a fault
 * proxy in front of it, a persistent-session subscriber counting every reading id, the daemon,
 * and an independent reader of its database. finish() drains everything and checks the ledger.
 */
export class FaultRun {
  readonly daemon = new DaemonProc();
  readonly faults: FaultMark[] = [];
  mosq!: Mosquitto | NatsBroker;
  /** the daemon always reaches the broker through it, whether the scenario injects network faults or not */
  proxy!: FaultProxy;
  readonly tap: WireTap;
  readonly protocolVersion: 4 | 5;
  ledger!: Ledger;
  reader!: CommitReader;
  readonly dbPath: string;
  readonly configPath: string;
  readonly drainConfigPath: string;
  readonly batchSize: number;
  readonly maxInFlight: number;
  readonly publishTimeoutMs: number;
  /** readings written by addBacklog during the run */
  backlogAdded = 0;
  private readonly tmp = makeTmp('esf-');

  private constructor(readonly o: RunOptions) {
    this.batchSize = o.batchSize ?? 250;
    this.maxInFlight = o.maxInFlight ?? 8;
    this.publishTimeoutMs = o.publishTimeoutMs ?? 1000;
    this.protocolVersion = o.broker === 'nats' ? 4 : 5;
    this.tap = new WireTap(this.protocolVersion);
    const dbDir = o.dbDir ?? join(this.tmp.dir, 'db');
    this.dbPath = join(dbDir, 'f.db');
    this.configPath = join(this.tmp.dir, 'run.yaml');
    this.drainConfigPath = join(this.tmp.dir, 'drain.yaml');
  }

  get dir(): string {
    return this.tmp.dir;
  }

  get bound(): number {
    return this.batchSize * this.maxInFlight;
  }

  /**
   * Readings a fault may make the daemon send again, per connection it costs: what is in flight;
   * a fault that ends the process (kill -9, a power cut) also what was acknowledged and not yet
   * written down (the AckBook holds at most as many: docs/durability.md#acknowledged-rows).
   */
  boundFor(kind: string): number {
    return KILLS_PROCESS.has(kind) ? 2 * this.bound : this.bound;
  }

  static async open(o: RunOptions): Promise<FaultRun> {
    const run = new FaultRun(o);
    try {
      await run.init();
    } catch (err) {
      await run.close();
      throw err;
    }
    return run;
  }

  private async init(): Promise<void> {
    this.mosq = this.o.broker === 'nats' ? await NatsBroker.start(join(this.dir, 'nats')) : await Mosquitto.start(join(this.dir, 'mosq'));
    this.proxy = await new FaultProxy(this.mosq.port).listen();
    this.tap.attach(this.proxy);
    this.ledger = await Ledger.start(this.mosq.url, `${PREFIX}/+/readings`, { protocolVersion: this.protocolVersion });
    this.writeConfigs(this.dbPath);
    if (this.o.prefill) this.prefill(this.o.prefill);
    this.reader = new CommitReader(this.dbPath);
  }

  /** The run's config and a drain-only twin (no sensors) used to empty the backlog at the end. */
  writeConfigs(dbPath: string): void {
    const base = {
      device: { id: DEVICE },
      database: { path: dbPath, synchronous: this.o.synchronous ?? 'FULL', commitWindowMs: this.o.commitWindowMs ?? 0 },
      mqtt: { url: this.proxy.url, topicPrefix: PREFIX, keepaliveSec: 5, connectTimeoutMs: 1000, protocolVersion: this.protocolVersion },
      sync: {
        batchSize: this.batchSize,
        maxInFlight: this.maxInFlight,
        intervalMs: 100,
        publishTimeoutMs: this.publishTimeoutMs,
        shutdownTimeoutMs: 1000,
        retry: { initialDelayMs: 100, maxDelayMs: 1000, maxAttempts: 10 },
      },
      status: { intervalMs: 2000 },
      // no disk caps: drop-oldest would delete pending rows on the small file systems of the
      // disk-full and power-loss scenarios; caps and their announced drops have tests of their own
      retention: { maxDatabaseBytes: 0, minFreeDiskBytes: 0 },
      log: { level: 'info' },
    };
    const sensors = [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: this.o.perSecond ?? 500 }];
    writeConfig(this.dir, { ...base, sensors }, 'run.yaml');
    writeConfig(this.dir, { ...base, sensors: [] }, 'drain.yaml');
  }

  private prefill(n: number): void {
    mkdirSync(join(this.dbPath, '..'), { recursive: true });
    const store = new Store(this.dbPath, { create: true, synchronous: 'NORMAL' });
    try {
      fill(store, n, 5000);
    } finally {
      store.close();
    }
  }

  async startDaemon(until: 'sampling' | 'connected' = 'connected'): Promise<void> {
    await this.daemon.start(this.configPath, until);
    this.reader.start();
  }

  /**
   * Makes the moment a fault may come: a drain is under way (a large backlog pending: topped up by
   * a second writer when the daemon has caught up) and a batch is awaiting its PUBACK. Without
   * it, most faults after the first came when the backlog was gone and nothing was in flight.
   */
  async inDrain(timeoutMs = 30_000): Promise<void> {
    if (this.reader.pending() < this.bound * 10) await this.addBacklog(this.o.refill ?? 100_000);
    // only the wire tap while waiting: this process also forwards the daemon's bytes (the proxy),
    // and a busy poll of the database here would delay them into publish timeouts of its own
    await until(() => this.tap.inFlightNow() > 0, timeoutMs, 'a batch in flight', 5);
  }

  /** Appends n pending readings beside the running daemon (a worker thread: nothing here blocks). */
  async addBacklog(n: number): Promise<void> {
    const w = new Worker(new URL('./backlog-writer.mjs', import.meta.url), { workerData: { path: this.dbPath, n } });
    const [code] = (await once(w, 'exit')) as [number];
    if (code !== 0) throw new Error(`backlog writer exited ${code}`);
    this.backlogAdded += n;
  }

  /** Notes the moment of a fault: the subscriber's resends after it are charged to it. */
  markFault(kind: string): void {
    const pending = this.reader.pending();
    this.faults.push({ kind, pending, inFlight: this.tap.inFlightNow(), resentBefore: this.ledger.resent, messages: this.ledger.seqs.length, at: Date.now() });
  }

  /**
   * Waits until the consequences of the last fault are over, so that the next fault's resends
   * are not mixed with this one's: the daemon is connected, every batch it sent before the
   * fault was healed has settled (a publish timeout later, plus `lingerMs` for bytes a slow link
   * still holds), and then the subscriber has received a reading beyond the oldest window ×
   * batch pending rows. The daemon sends the oldest pending rows first, so by then everything it
   * sends again because of the fault has arrived.
   */
  async recovered(o: { lingerMs?: number; timeoutMs?: number; newProcess?: boolean } = {}): Promise<void> {
    const f = this.faults.at(-1);
    if (!f) return;
    const timeoutMs = o.timeoutMs ?? 60_000;
    await this.daemon.linkUp(timeoutMs);
    // a daemon started after the fault has no batch of the old one to settle
    if (!o.newProcess) {
      await sleep(this.publishTimeoutMs + 200 + (o.lingerMs ?? 0));
      await this.daemon.linkUp(timeoutMs);
    }
    const horizon = this.reader.horizon(this.bound);
    const from = this.ledger.seqs.length;
    await until(() => this.ledger.seqs.slice(from).some((m) => m.some((seq) => seq >= horizon)), timeoutMs, `recovery after ${f.kind}`, 50);
  }

  /** Rows the daemon still has to send (through the reader's connection). */
  pending(): number {
    return this.reader.pending();
  }

  /** Puts every fault right so that the final drain can happen. */
  async heal(): Promise<void> {
    this.proxy.resume();
    this.proxy.delayMs = 0;
    this.proxy.refuse(false);
    const p = this.mosq.proc;
    if (p && p.exitCode === null) p.kill('SIGCONT');
    if (!this.mosq.proc) await this.mosq.start();
  }

  /**
   * Stops the daemon (SIGTERM: must exit 0), starts a drain-only one until nothing is pending,
   * stops it, and compares: the reader's committed ids and the final database against the
   * subscriber's ledger.
   */
  async finish(): Promise<RunOutcome> {
    const failures: string[] = [];
    await this.heal();
    try {
      await this.recovered();
    } catch (err) {
      failures.push((err as Error).message);
    }
    if (this.daemon.running) {
      this.markFault('final-stop');
      const t = await this.daemon.term();
      if (t.code !== 0) failures.push(`final SIGTERM: exit ${t.code ?? t.signal}`);
    }
    await this.daemon.start(this.drainConfigPath, 'connected');
    this.reader.start();
    try {
      await waitFor(() => this.reader.pending() === 0, 180_000, 'backlog drained', 200);
    } catch (err) {
      failures.push(`drain: ${(err as Error).message} (${this.reader.pending()} pending)`);
    }
    const t = await this.daemon.term();
    if (t.code !== 0) failures.push(`drain daemon SIGTERM: exit ${t.code ?? t.signal}`);
    this.reader.pollAll();
    this.reader.close();

    const final = readDatabase(this.dbPath);
    const committed = new Set<string>([...this.reader.seen.keys(), ...final.rows.keys()]);
    // everything in the drained database has been acknowledged: it must arrive (readings that
    // vanished from the database may never come, no point waiting for them)
    try {
      await waitFor(() => [...final.rows.keys()].every((id) => this.ledger.has(id)), 30_000, 'every reading of the database at the subscriber', 200);
    } catch {
      /* counted below as lost */
    }
    const missing = [...committed].filter((id) => !this.ledger.has(id));
    // a reading the broker acknowledged (PUBACK seen on the wire) and then lost is the broker's loss
    const afterAck = missing.filter((id) => {
      const row = final.rows.get(id);
      return row?.synced && this.tap.ackFor(row.seq) !== undefined;
    });
    const lostIds = missing.filter((id) => !afterAck.includes(id));
    const vanished = [...this.reader.seen.keys()].filter((id) => !final.rows.has(id)).length;
    const unexpected = [...this.ledger.counts.keys()].filter((id) => !committed.has(id)).length;
    if (this.ledger.bad > 0) failures.push(`${this.ledger.bad} unreadable messages at the subscriber`);
    const parked = [...final.rows.values()].filter((r) => r.parked).length;
    if (parked > 0) failures.push(`${parked} rows parked`);

    // resends after each fault, up to the next one
    const marks = [...this.faults.map((f) => f.resentBefore), this.ledger.resent];
    const lossTimes = this.daemon.lives.flatMap((l) =>
      l.proc
        .logLines()
        .filter((x) => x.msg === 'disconnected from broker' && Number(x.level) >= 40)
        .map((x) => Number(x.time)),
    );
    const perFault = this.faults.map((f, i) => {
      const until = this.faults[i + 1]?.at ?? Infinity;
      // a daemon killed or stopped loses its connection without a warning line: that is one loss
      const losses = Math.max(1, lossTimes.filter((t) => t >= f.at && t < until).length);
      return { kind: f.kind, resent: marks[i + 1] - marks[i], pending: f.pending, inFlight: f.inFlight, losses };
    });
    if (this.faults.length > 0 && this.faults[0].resentBefore > 0) failures.push(`${this.faults[0].resentBefore} readings resent before any fault`);
    const outcome: RunOutcome = {
      readings: committed.size,
      lost: lostIds.length,
      lostAfterAck: afterAck.length,
      lostAfterAckRows: afterAck.map((id) => {
        const row = final.rows.get(id)!;
        return { id, ...row, ack: this.tap.ackFor(row.seq) };
      }),
      vanished,
      unexpected,
      duplicates: this.ledger.duplicates,
      resent: this.ledger.resent,
      redelivered: this.ledger.redeliveredReadings,
      faults: this.faults.filter((f) => f.kind !== 'final-stop').length,
      perFault,
      integrity: final.integrity,
      failures,
      finalRows: final.rows.size,
      lostIds: lostIds.slice(0, 20),
      lostRows: lostIds.map((id) => ({ id, ...(final.rows.get(id) ?? { seq: this.reader.seen.get(id) ?? -1, vanished: true }) })),
    };
    return outcome;
  }

  async close(): Promise<void> {
    await this.daemon.kill9().catch(() => {});
    this.reader?.close();
    await this.ledger?.stop().catch(() => {});
    await this.proxy?.close().catch(() => {});
    this.mosq?.proc?.kill('SIGCONT');
    await this.mosq?.stop().catch(() => {});
    this.tmp.cleanup();
  }
}

export interface FinalRow {
  seq: number;
  synced: boolean;
  parked: boolean;
  syncedAt: string | null;
  retries: number;
}

/** PRAGMA integrity_check of a database, beside the running daemon (WAL: a read snapshot). */
export function integrityNow(path: string): string {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.pragma('integrity_check') as Array<{ integrity_check: string }>).map((r) => r.integrity_check).join('; ');
  } finally {
    db.close();
  }
}

/** Every row of a database and its integrity check. */
export function readDatabase(path: string): { rows: Map<string, FinalRow>; integrity: string } {
  const integrity = integrityNow(path);
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const rows = new Map<string, FinalRow>();
    const all = db.prepare('SELECT id, seq, synced, parked_at IS NOT NULL, sync_timestamp, retry_count FROM transactions').raw().all() as Array<[string, number, number, number, string | null, number]>;
    for (const [id, seq, synced, parked, syncedAt, retries] of all) {
      rows.set(id, { seq, synced: synced === 1, parked: parked === 1, syncedAt, retries });
    }
    return { rows, integrity };
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------------

/** Adds up the runs of one scenario into its row of the table, then asserts on it. */
export class Scenario {
  readonly rng: Rng;
  readonly result: ScenarioResult;
  private readonly afterAck: string[] = [];
  private readonly losses: string[] = [];
  private readonly t0 = Date.now();

  constructor(name: string, description: string) {
    const seed = scenarioSeed(name);
    this.rng = new Rng(seed);
    this.result = {
      scenario: name,
      description,
      seed,
      runs: 0,
      faults: 0,
      readings: 0,
      lost: 0,
      lostAfterAck: 0,
      vanished: 0,
      unexpected: 0,
      duplicates: 0,
      resent: 0,
      redelivered: 0,
      faultsWithResend: 0,
      faultsInFlight: 0,
      connectionLosses: 0,
      maxResentPerFault: 0,
      maxResentLosses: 1,
      boundPerFault: 0,
      maxResentBound: 1,
      integrity: 'ok',
      durationS: 0,
      notes: [],
      failures: [],
    };
    console.log(`[${name}] scenario seed ${seed} (campaign FAULT_SEED=${inject('faultSeed')}, profile ${PROFILE})`);
  }

  add(run: FaultRun, o: RunOutcome): void {
    const r = this.result;
    r.runs++;
    r.faults += o.faults;
    r.readings += o.readings;
    r.lost += o.lost;
    r.lostAfterAck += o.lostAfterAck;
    r.vanished += o.vanished;
    r.unexpected += o.unexpected;
    r.duplicates += o.duplicates;
    r.resent += o.resent;
    r.redelivered += o.redelivered;
    r.boundPerFault = run.bound;
    for (const f of o.perFault) {
      const bound = run.boundFor(f.kind);
      if (f.kind !== 'final-stop') {
        if (f.resent > 0) r.faultsWithResend++;
        if (f.inFlight > 0) r.faultsInFlight++;
        r.connectionLosses += f.losses;
      }
      // the fault that came closest to its bound (what was in flight at each connection it cost)
      if (f.resent / (bound * f.losses) > r.maxResentPerFault / (r.maxResentBound * r.maxResentLosses)) {
        r.maxResentPerFault = f.resent;
        r.maxResentLosses = f.losses;
        r.maxResentBound = bound;
      }
    }
    if (o.integrity !== 'ok') r.integrity = o.integrity;
    const bad = o.lost > 0 || o.lostAfterAck > 0 || o.vanished > 0 || o.unexpected > 0 || o.integrity !== 'ok' || o.failures.length > 0 || o.perFault.some((f) => f.resent > run.boundFor(f.kind) * f.losses);
    const runNo = r.runs;
    for (const f of o.failures) r.failures.push(`run ${runNo}: ${f}`);
    if (o.lost > 0) this.losses.push(`run ${runNo}: ${o.lost} lost: ${describeLost(o.lostRows)}`);
    if (o.lostAfterAck > 0) {
      const acks = [...new Map(o.lostAfterAckRows.map((x) => [x.ack?.batch, x])).values()];
      const detail = acks.map((x) => `batch ${x.ack?.batch} PUBACKed at ${new Date(x.ack?.at ?? 0).toISOString()}, seq ${x.seq}…`).join('; ');
      const faults = run.faults.map((f) => `${f.kind} at ${new Date(f.at).toISOString()}`).join(', ');
      this.afterAck.push(`run ${runNo}: ${o.lostAfterAck} readings acknowledged by the broker never reached the subscriber (${detail}; faults: ${faults})`);
    }
    console.log(
      `[${r.scenario}] run ${runNo}: ${o.readings} readings, ${o.faults} faults, lost ${o.lost}, lost after PUBACK ${o.lostAfterAck}, vanished ${o.vanished}, unexpected ${o.unexpected}, ` +
        `resent ${o.resent} (per fault, resent/pending then/batches in flight then/connections lost: ${o.perFault.map((f) => `${f.kind}:${f.resent}/${f.pending}/${f.inFlight}/${f.losses}`).join(' ')}), redelivered ${o.redelivered}, integrity ${o.integrity}` +
        (o.failures.length ? `; FAILURES: ${o.failures.join('; ')}` : ''),
    );
    if (bad) this.saveLogs(run, runNo);
  }

  /** Keeps the daemon logs of a run that went wrong, for the lead. */
  private saveLogs(run: FaultRun, runNo: number): void {
    const dir = resolve(process.env.FAULT_OUT ?? '.fault-out', 'logs');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${this.result.scenario}-run${runNo}-seed${this.result.seed}.log`);
    const faults = run.faults.map((f) => `${new Date(f.at).toISOString()} ${f.kind} resentBefore=${f.resentBefore}`).join('\n');
    writeFileSync(file, `faults:\n${faults}\n\n${run.daemon.dump()}\n--- broker:\n${run.mosq.log()}`);
    console.log(`[${this.result.scenario}] logs of run ${runNo} kept in ${file}`);
  }

  note(s: string): void {
    this.result.notes.push(s);
    console.log(`[${this.result.scenario}] ${s}`);
  }

  fail(s: string): void {
    this.result.failures.push(s);
  }

  skip(reason: string): void {
    this.result.skipped = reason;
    console.log(`[${this.result.scenario}] SKIPPED: ${reason}`);
    writeResult(inject('faultResultsDir'), this.result);
  }

  /**
   * Writes the row, then holds the scenario to the promise: nothing lost, nothing vanished,
   * duplicates bounded. `brokerMayLose`: the scenario crashes the broker, which acknowledges a
   * publish before it has saved or delivered it (Mosquitto; NATS now and then); such losses are
   * reported, not failed.
   */
  finish(opts: { brokerMayLose?: boolean; measureOnly?: boolean } = {}): void {
    const r = this.result;
    r.durationS = Math.round((Date.now() - this.t0) / 1000);
    if (opts.brokerMayLose) for (const a of this.afterAck) this.note(a);
    else r.failures.push(...this.afterAck);
    if (r.integrity !== 'ok') r.failures.push(`integrity check: ${r.integrity}`);
    // measureOnly: a setting that does not promise durability (synchronous=NORMAL) is measured, not held to it
    if (opts.measureOnly) {
      for (const l of this.losses) this.note(l);
    } else {
      r.failures.push(...this.losses);
      if (r.vanished > 0) r.failures.push(`${r.vanished} committed readings missing from the database`);
      if (r.unexpected > 0) r.failures.push(`${r.unexpected} readings at the subscriber that the daemon never committed`);
      if (r.maxResentPerFault > r.maxResentBound * r.maxResentLosses) {
        r.failures.push(
          `${r.maxResentPerFault} readings resent after one fault that cost ${r.maxResentLosses} connection(s), more than the ${r.maxResentBound} per connection that can be in flight (sync.maxInFlight × sync.batchSize; twice that when the process dies: acknowledged, not yet written)`,
        );
      }
    }
    writeResult(inject('faultResultsDir'), r);
    expect(r.failures, `${r.scenario} (seed ${r.seed})`).toEqual([]);
    if (!opts.measureOnly) expect(r.lost, 'committed readings that never reached the subscriber').toBe(0);
  }
}

/** Groups lost readings into seq ranges with their state in the final database. */
export function describeLost(rows: RunOutcome['lostRows']): string {
  const sorted = [...rows].sort((a, b) => a.seq - b.seq);
  const groups: string[] = [];
  let start = 0;
  for (let i = 1; i <= sorted.length; i++) {
    const a = sorted[i - 1];
    const b = sorted[i];
    const state = (r: typeof a) => (r.vanished ? 'vanished' : r.synced ? `synced at ${r.syncedAt}` : 'pending') + `, retries ${r.retries ?? '?'}`;
    // after a power cut under NORMAL a seq can be taken again by a new reading: same seq, same range
    if (!b || b.seq > a.seq + 1 || state(b) !== state(a)) {
      groups.push(`seq ${sorted[start].seq}-${a.seq} (${i - start} readings${i - start > a.seq - sorted[start].seq + 1 ? ', seqs taken again after a cut' : ''}; ${state(a)})`);
      start = i;
    }
  }
  return groups.slice(0, 10).join('; ') + (groups.length > 10 ? `; … ${groups.length - 10} more ranges` : '');
}

/**
 * Runs one run of a scenario with cleanup whatever happens: the body injects the faults, then
 * the run is drained and checked; `check` may add scenario-specific failures.
 */
export async function withRun(
  scenario: Scenario,
  opts: Omit<RunOptions, 'rng'>,
  body: (run: FaultRun) => Promise<void>,
  check?: (run: FaultRun, outcome: RunOutcome) => string[],
): Promise<void> {
  const runNo = scenario.result.runs + 1;
  const run = await FaultRun.open({ ...opts, rng: scenario.rng });
  try {
    let bodyError: string | undefined;
    try {
      await body(run);
    } catch (err) {
      bodyError = `run ${runNo}: ${(err as Error).message}`;
      console.log(`[${scenario.result.scenario}] run ${runNo} failed: ${(err as Error).stack}`);
    }
    let outcome: RunOutcome;
    try {
      outcome = await run.finish();
    } catch (err) {
      scenario.fail(`run ${runNo}: final drain and check: ${(err as Error).message}`);
      console.log(`[${scenario.result.scenario}] final check failed: ${(err as Error).stack}\n${run.daemon.dump().slice(-5000)}`);
      return;
    }
    if (bodyError) outcome.failures.unshift(bodyError);
    if (check) outcome.failures.push(...check(run, outcome));
    scenario.add(run, outcome);
  } finally {
    await run.close();
  }
}

export { sleep, waitFor };
