import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** What one scenario found over all its runs: one row of the suite's table. */
export interface ScenarioResult {
  scenario: string;
  description: string;
  seed: number;
  runs: number;
  /** faults injected (the final stop of each run is not counted) */
  faults: number;
  /** readings committed by the daemon (seen by the independent reader or in the final database) */
  readings: number;
  /** committed readings that never reached the subscriber, without the broker having acknowledged them */
  lost: number;
  /** readings the broker acknowledged (PUBACK seen on the wire) and then lost */
  lostAfterAck: number;
  /** committed readings missing from the final database (delivered or not) */
  vanished: number;
  /** readings at the subscriber that the daemon never committed */
  unexpected: number;
  /** every extra copy at the subscriber */
  duplicates: number;
  /** extra copies sent by the daemon (rows sent again in a new batch) */
  resent: number;
  /** extra copies the broker redelivered to the subscriber (same batch twice) */
  redelivered: number;
  faultsWithResend: number;
  /** faults that came while readings batches awaited their PUBACK on the wire */
  faultsInFlight: number;
  /** connections the daemon lost because of the faults (a daemon stopped or killed counts one) */
  connectionLosses: number;
  /** the resends after the fault that came closest to its bound, and the connections it cost */
  maxResentPerFault: number;
  maxResentLosses: number;
  /** sync.maxInFlight × sync.batchSize: what can be in flight when a connection is lost */
  boundPerFault: number;
  /** the bound of the fault that came closest to it (twice boundPerFault for a fault that kills the process) */
  maxResentBound: number;
  integrity: string;
  durationS: number;
  skipped?: string;
  /** measurements that are reported rather than asserted (power loss under NORMAL) */
  notes: string[];
  failures: string[];
}

const ORDER = [
  'daemon-kill',
  'sigterm',
  'broker-kill',
  'broker-kill-nats',
  'broker-kill-e2e',
  'broker-kill-e2e-nats',
  'broker-stop',
  'broker-freeze',
  'partition',
  'cut',
  'slow-link',
  'disk-full',
  'power-loss-FULL',
  'power-loss-NORMAL',
];

export function writeResult(dir: string, r: ScenarioResult): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, `${r.scenario}.json`), JSON.stringify(r, null, 2));
}

export function readResults(dir: string): ScenarioResult[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
  const rs = files.map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as ScenarioResult);
  const rank = (s: string) => (ORDER.indexOf(s) < 0 ? ORDER.length : ORDER.indexOf(s));
  return rs.sort((a, b) => rank(a.scenario) - rank(b.scenario) || a.scenario.localeCompare(b.scenario));
}

const n = (v: number) => v.toLocaleString('en-US');

/** The suite's table as markdown (docs/durability.md carries it). */
export function markdownTable(rs: ScenarioResult[]): string {
  const head = ['scenario', 'runs', 'faults', 'readings', 'lost', 'lost by the broker after its PUBACK', 'vanished', 'duplicates (resent + redelivered)', 'connections lost', 'max resent after one fault (in flight × connections it cost)', 'faults with batches in flight', 'faults that caused resends', 'integrity'];
  const lines = [`| ${head.join(' | ')} |`, `| ${head.map((h, i) => (i === 0 ? '---' : '---:')).join(' | ')} |`];
  for (const r of rs) {
    if (r.skipped) {
      lines.push(`| ${r.scenario} | skipped: ${r.skipped} |${' |'.repeat(head.length - 2)}`);
      continue;
    }
    lines.push(
      `| ${r.scenario} | ${r.runs} | ${r.faults} | ${n(r.readings)} | ${n(r.lost)} | ${n(r.lostAfterAck)} | ${n(r.vanished)} | ${n(r.duplicates)} (${n(r.resent)} + ${n(r.redelivered)}) | ${r.connectionLosses} | ${n(r.maxResentPerFault)} (${n((r.maxResentPerFault > 0 ? r.maxResentBound : r.boundPerFault))} × ${r.maxResentLosses}) | ${r.faultsInFlight ?? '?'} | ${r.faultsWithResend} | ${r.integrity} |`,
    );
  }
  return lines.join('\n');
}

/** Plain text for the terminal. */
export function textTable(rs: ScenarioResult[]): string {
  const head = ['scenario', 'runs', 'faults', 'readings', 'lost', 'brokerLost', 'vanished', 'dups', 'resent', 'redeliv', 'conns', 'max/fault', 'bound', 'x', 'inflight', 'hit', 'integrity', 'seed'];
  const rows = rs.map((r) =>
    r.skipped
      ? [r.scenario, `skipped: ${r.skipped}`]
      : [r.scenario, r.runs, r.faults, r.readings, r.lost, r.lostAfterAck, r.vanished, r.duplicates, r.resent, r.redelivered, r.connectionLosses, r.maxResentPerFault, (r.maxResentPerFault > 0 ? r.maxResentBound : r.boundPerFault), r.maxResentLosses, r.faultsInFlight ?? '?', r.faultsWithResend, r.integrity, r.seed].map(String),
  );
  const widths = head.map((h, i) => Math.max(h.length, ...rows.filter((r) => r.length > 2).map((r) => String(r[i]).length)));
  const fmt = (cells: string[]) => (cells.length === 2 ? `${cells[0].padEnd(widths[0])}  ${cells[1]}` : cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  '));
  return [fmt(head), ...rows.map((r) => fmt(r as string[]))].join('\n');
}
