import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { Store } from '../../src/store/store.js';
import { FaultProxy } from '../helpers/proxy.js';
import { fill } from '../helpers/stack.js';
import { Ledger } from '../helpers/subscriber.js';
import { makeTmp, writeConfig } from '../helpers/tmp.js';
import { sleep, spawnCli, waitFor } from '../helpers/process.js';
import { embedded, mosquitto, mosquittoSecure, nats, rabbitmq, type BrokerKind, type RunningBroker } from './brokers.js';

// The same end-to-end check against every broker we can run here: 1,000 readings waiting in the
// database, the real daemon (the built CLI) publishes them, the connection is cut once midway,
// every reading must be marked synced and reach a subscriber at least once. What each broker
// does differently goes into the notes; the table is written into docs/mqtt-api.md.

const READINGS = 1000;
const TOPIC_ROOT = 'interop';
const DOC = fileURLToPath(new URL('../../docs/mqtt-api.md', import.meta.url));
const tmp = makeTmp('es-io-');

interface Row {
  broker: string;
  version: string;
  protocol: string;
  result: 'pass' | 'FAIL' | 'not supported' | 'skipped';
  notes: string[];
  /** what differs from run to run (where the cut fell, duplicates): printed, kept out of the docs */
  run: string[];
}

interface Case {
  kind: BrokerKind;
  protocol: 4 | 5;
  /** the broker is known not to speak this protocol: the check is that the daemon says so clearly */
  unsupported?: string;
}

const groups: Array<{ kind: BrokerKind; cases: Case[] }> = [
  { kind: mosquitto, cases: [{ kind: mosquitto, protocol: 5 }, { kind: mosquitto, protocol: 4 }] },
  { kind: mosquittoSecure, cases: [{ kind: mosquittoSecure, protocol: 5 }] },
  { kind: nats, cases: [{ kind: nats, protocol: 4 }, { kind: nats, protocol: 5, unsupported: 'NATS speaks MQTT 3.1.1 only' }] },
  { kind: rabbitmq, cases: [{ kind: rabbitmq, protocol: 4 }, { kind: rabbitmq, protocol: 5, unsupported: 'MQTT 5 needs RabbitMQ 3.13 or newer' }] },
  { kind: embedded, cases: [{ kind: embedded, protocol: 5 }, { kind: embedded, protocol: 4 }] },
];
const expectedRows = groups.reduce((n, g) => n + g.cases.length, 0);
const rows: Row[] = [];

afterAll(() => {
  const table = renderTable(rows);
  process.stdout.write('\n' + renderTable(rows, true) + '\n');
  // a filtered run (vitest -t) would write a partial table: only a full run updates the docs
  if (rows.length === expectedRows) writeDocTable(table);
  tmp.cleanup();
});

const label = (k: BrokerKind) => (k.variant ? `${k.implementation} (${k.variant})` : k.implementation);
const protocolName = (p: 4 | 5) => (p === 5 ? 'MQTT 5' : 'MQTT 3.1.1');

for (const group of groups) {
  const skip = group.kind.unavailable();
  describe(label(group.kind), () => {
    let broker: RunningBroker | undefined;
    let startError: string | undefined;
    beforeAll(async () => {
      if (skip) return;
      try {
        broker = await group.kind.start(join(tmp.dir, group.kind.implementation.replace(/\W+/g, '-') + (group.kind.variant ? '-v' : '')), TOPIC_ROOT);
      } catch (err) {
        startError = (err as Error).message;
      }
    }, 120_000);
    afterAll(async () => {
      await broker?.stop();
    }, 60_000);

    for (const c of group.cases) {
      it(`${protocolName(c.protocol)}: ${READINGS} readings synced through a connection cut, every one at the subscriber`, async (ctx) => {
        const row: Row = { broker: label(c.kind), version: '', protocol: protocolName(c.protocol), result: 'skipped', notes: [], run: [] };
        rows.push(row);
        if (skip) {
          row.notes.push(skip);
          ctx.skip();
          return;
        }
        expect(startError, `the broker did not start: ${startError}`).toBeUndefined();
        row.version = broker!.version;
        const outcome = await endToEnd(broker!, c, `${rows.length}`);
        Object.assign(row, outcome);
        if (c.unsupported) expect(row.result, row.notes.join('; ')).toBe('not supported');
        else expect(row.result, row.notes.join('; ')).toBe('pass');
      }, 120_000);
    }
  });
}

describe('the table', () => {
  it('at least three different broker implementations pass', () => {
    const passing = new Set(rows.filter((r) => r.result === 'pass').map((r) => groups.find((g) => label(g.kind) === r.broker)!.kind.implementation));
    expect([...passing].length, `passing: ${[...passing].join(', ')}`).toBeGreaterThanOrEqual(3);
  });
});

/** Runs the daemon against the broker through a proxy that cuts the connection once. */
async function endToEnd(b: RunningBroker, c: Case, name: string): Promise<Pick<Row, 'result' | 'notes' | 'run'>> {
  const dir = join(tmp.dir, `case-${name}`);
  mkdirSync(dir, { recursive: true });
  const device = `io-${name}`;
  const db = join(dir, 'edge.db');
  const store = new Store(db, { create: true });
  fill(store, READINGS);
  store.close();

  const target = new URL(b.url);
  const proxy = await new FaultProxy(Number(target.port)).listen();
  // a slow link, so that the cut falls in the middle of the stream rather than after it
  proxy.delayMs = 10;
  target.port = String(proxy.port);
  const readingsTopic = `${TOPIC_ROOT}/${device}/readings`;
  const statusTopic = `${TOPIC_ROOT}/${device}/status`;
  const subProtocol = c.unsupported ? 4 : c.protocol;
  const ledger = await Ledger.start(b.subscriberUrl, readingsTopic, { protocolVersion: subProtocol, statusFilter: statusTopic, ...b.subscriber });
  const config = writeConfig(dir, {
    device: { id: device },
    database: { path: db },
    mqtt: { url: target.toString().replace(/\/$/, ''), topicPrefix: TOPIC_ROOT, protocolVersion: c.protocol, connectTimeoutMs: 5000, ...b.mqtt },
    sync: { batchSize: 50, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 5000, shutdownTimeoutMs: 2000, retry: { initialDelayMs: 100, maxDelayMs: 500 } },
    status: { intervalMs: 1000 },
    sensors: [],
    log: { level: 'info' },
  });
  const d = spawnCli(['run', '--config', config]);
  const synced = () => count(db, 'SELECT count(*) FROM transactions WHERE synced = 1');
  const notes = [...(b.notes ?? [])];
  const run: string[] = [];
  try {
    const isConnected = () => d.logLines().some((l) => l.msg === 'connected to broker');
    // a refused connection shows as the daemon's lastError; give it a moment to try again, then judge
    await waitFor(() => isConnected() || d.child.exitCode !== null || daemonState(db)?.lastError, 15_000, 'connected or refused').catch(() => {});
    if (!isConnected()) await sleep(2000);
    if (!isConnected() || d.child.exitCode !== null) {
      const state = daemonState(db);
      return { result: 'not supported', notes: [...notes, c.unsupported ?? 'no connection', `daemon reports: ${state?.lastError ?? 'nothing'}`], run };
    }
    await waitFor(() => synced() >= 300, 30_000, '300 rows synced', 5);
    const atCut = synced();
    proxy.cut();
    await waitFor(() => synced() === READINGS, 60_000, `all ${READINGS} synced`);
    const ids = new Database(db, { readonly: true }).prepare('SELECT id FROM transactions WHERE synced = 1').pluck().all() as string[];
    await waitFor(() => ids.every((id) => ledger.has(id)), 10_000, 'every synced id at the subscriber').catch(() => {});
    const missing = ids.filter((id) => !ledger.has(id)).length;
    d.child.kill('SIGTERM');
    const { code } = await d.exited;
    const goodbye = await waitFor(() => ledger.statuses.some((s) => s.state === 'offline' && s.reason === 'shutdown'), 5000, 'goodbye').catch(() => false);

    const connects = d.logLines().filter((l) => l.msg === 'connected to broker');
    notes.push(...limitNotes(c.protocol, connects));
    run.push(atCut < READINGS ? `cut at ${atCut}/${READINGS} synced` : 'cut after the last acknowledgement', `${ledger.duplicates} duplicates`);
    if (!goodbye) notes.push('no shutdown status received');
    notes.push(await retainedNote(b, subProtocol, statusTopic));
    const ok = code === 0 && missing === 0 && ids.length === READINGS && connects.length >= 2;
    if (!ok) notes.push(`exit ${code}, ${ids.length} synced, ${missing} missing at the subscriber, ${connects.length} connections`);
    return { result: ok ? 'pass' : 'FAIL', notes, run };
  } catch (err) {
    return { result: 'FAIL', notes: [...notes, (err as Error).message.slice(0, 200)], run };
  } finally {
    if (d.child.exitCode === null) {
      d.child.kill('SIGKILL');
      await d.exited;
    }
    await ledger.stop().catch(() => {});
    await proxy.close();
  }
}

/** What the broker's CONNACK said, as far as it matters to the daemon. */
function limitNotes(protocol: 4 | 5, connects: Array<Record<string, unknown>>): string[] {
  if (protocol === 4) return ['no reason codes: a refused publish looks delivered'];
  const first = connects[0] ?? {};
  const out: string[] = [];
  out.push(first.receiveMaximum === 65535 ? 'no Receive Maximum advertised' : `Receive Maximum ${first.receiveMaximum}`);
  if (first.maximumPacketSize !== undefined) out.push(`Maximum Packet Size ${first.maximumPacketSize}`);
  out.push(first.topicAliasMaximum ? `topic aliases (up to ${first.topicAliasMaximum})` : 'no topic aliases');
  const second = connects[1];
  if (second) out.push(second.sessionPresent ? 'session resumed after the cut' : 'session not resumed after the cut');
  return out;
}

/** Does a subscriber that arrives later get the device's status? */
async function retainedNote(b: RunningBroker, protocol: 4 | 5, statusTopic: string): Promise<string> {
  const late = await Ledger.start(b.subscriberUrl, `${TOPIC_ROOT}/nobody/readings`, { protocolVersion: protocol, statusFilter: statusTopic, ...b.subscriber });
  try {
    const got = await waitFor(() => late.statuses.length > 0, 3000, 'retained status').catch(() => false);
    return got ? 'retained status kept' : 'retained status NOT kept';
  } finally {
    await late.stop().catch(() => {});
    await sleep(50);
  }
}

function count(db: string, sql: string): number {
  try {
    const d = new Database(db, { readonly: true, fileMustExist: true });
    try {
      return d.prepare(sql).pluck().get() as number;
    } finally {
      d.close();
    }
  } catch {
    return 0;
  }
}

function daemonState(db: string): { lastError?: string } | undefined {
  try {
    const d = new Database(db, { readonly: true, fileMustExist: true });
    try {
      const v = d.prepare("SELECT value FROM config WHERE key = 'daemon_state'").pluck().get() as string | undefined;
      return v ? JSON.parse(v) : undefined;
    } finally {
      d.close();
    }
  } catch {
    return undefined;
  }
}

function renderTable(rs: Row[], withRun = false): string {
  const lines = [
    `| Broker | Version | Protocol | Result | Notes |${withRun ? ' This run |' : ''}`,
    `| --- | --- | --- | --- | --- |${withRun ? ' --- |' : ''}`,
    ...rs.map((r) => `| ${r.broker} | ${r.version || '–'} | ${r.protocol} | ${r.result} | ${r.notes.join('; ').replace(/\|/g, '\\|')} |${withRun ? ` ${r.run.join('; ')} |` : ''}`),
  ];
  return lines.join('\n');
}

const BEGIN = '<!-- interop-table: written by npm run test:interop -->';
const END = '<!-- /interop-table -->';

function writeDocTable(table: string): void {
  const text = readFileSync(DOC, 'utf8');
  const a = text.indexOf(BEGIN);
  const b = text.indexOf(END);
  if (a < 0 || b < a) {
    process.stdout.write('docs/mqtt-api.md has no interop table markers: not updated\n');
    return;
  }
  const stamp = `Last run: Node ${process.version}, ${process.platform}-${process.arch}.`;
  writeFileSync(DOC, text.slice(0, a + BEGIN.length) + `\n${table}\n\n${stamp}\n` + text.slice(b));
}
