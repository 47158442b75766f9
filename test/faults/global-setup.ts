import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { markdownTable, readResults, textTable } from './lib/report.js';

declare module 'vitest' {
  export interface ProvidedContext {
    faultSeed: number;
    faultResultsDir: string;
  }
}

/**
 * One seed for the whole campaign (printed, and FAULT_SEED replays it), and one folder where
 * each scenario leaves its row; at the end the table is printed and written to .fault-out/.
 */
export default function setup(project: TestProject) {
  const seed = process.env.FAULT_SEED ? Number(process.env.FAULT_SEED) : Math.floor(Math.random() * 2 ** 31);
  const resultsDir = mkdtempSync(join(tmpdir(), 'esf-results-'));
  project.provide('faultSeed', seed);
  project.provide('faultResultsDir', resultsDir);
  const profile = process.env.FAULT_PROFILE === 'quick' ? 'quick' : 'full';
  console.log(`fault suite: seed ${seed}, profile ${profile} (replay: FAULT_SEED=${seed}${profile === 'quick' ? ' FAULT_PROFILE=quick' : ''} npm run test:faults)`);

  return () => {
    const results = readResults(resultsDir);
    rmSync(resultsDir, { recursive: true, force: true });
    if (results.length === 0) return;
    const outDir = resolve(process.env.FAULT_OUT ?? '.fault-out');
    mkdirSync(outDir, { recursive: true });
    const date = new Date().toISOString();
    const command = `FAULT_SEED=${seed}${profile === 'quick' ? ' FAULT_PROFILE=quick' : ''} npm run test:faults`;
    writeFileSync(join(outDir, 'faults.json'), JSON.stringify({ date, seed, profile, command, results }, null, 2));
    const md = [`Fault-injection suite, ${profile} profile, ${date}, \`${command}\``, '', markdownTable(results), ''];
    const notes = results.flatMap((r) => [...r.notes, ...r.failures.map((f) => `FAILED: ${f}`)].map((x) => `- ${r.scenario}: ${x}`));
    if (notes.length > 0) md.push(...notes, '');
    writeFileSync(join(outDir, 'faults.md'), md.join('\n'));
    console.log(`\nfault suite (seed ${seed}, ${profile}):\n${textTable(results)}\n${notes.join('\n')}\nwritten to ${outDir}/faults.{md,json}`);
  };
}
