#!/usr/bin/env node
// Summarises a V8 .cpuprofile (node --cpu-prof): self time by function and by package.
// usage: node bench/profile-summary.mjs FILE.cpuprofile [TOP] [SKIP_SECONDS]
// SKIP_SECONDS leaves out the start (module loading) to look at the steady state.
import { readFileSync } from 'node:fs';

const [file, topArg = '25', skipArg = '0'] = process.argv.slice(2);
const prof = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const self = new Map();
const dt = prof.timeDeltas;
let t = 0;
for (let i = 0; i < prof.samples.length; i++) {
  t += dt[i] ?? 0;
  if (t < Number(skipArg) * 1e6) continue;
  const id = prof.samples[i];
  self.set(id, (self.get(id) ?? 0) + (dt[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const idleId = prof.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id);
const busy = total - idleId.reduce((a, id) => a + (self.get(id) ?? 0), 0);
const where = (cf) => {
  const u = cf.url || '';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(u);
  if (m) return m[1];
  if (u.includes('/dist/')) return 'edge-sensor ' + u.slice(u.indexOf('/dist/') + 6);
  if (u.includes('/bench/')) return 'bench ' + u.slice(u.indexOf('/bench/') + 7);
  if (u.startsWith('node:')) return u;
  return cf.functionName.startsWith('(') ? cf.functionName : u || '(native)';
};
const fn = new Map();
const pkg = new Map();
for (const [id, us] of self) {
  const cf = byId.get(id).callFrame;
  const k = `${cf.functionName || '(anonymous)'}  ${where(cf)}:${cf.lineNumber + 1}`;
  fn.set(k, (fn.get(k) ?? 0) + us);
  const p = where(cf).split(' ')[0];
  pkg.set(p, (pkg.get(p) ?? 0) + us);
}
const pct = (us) => ((100 * us) / busy).toFixed(1).padStart(5) + '%';
console.log(`${file}: ${(total / 1000).toFixed(0)} ms sampled, ${(busy / 1000).toFixed(0)} ms not idle (percentages of that)`);
console.log('\nby package:');
for (const [k, us] of [...pkg].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(pct(us), k);
console.log('\nby function (self time):');
for (const [k, us] of [...fn].sort((a, b) => b[1] - a[1]).slice(0, Number(topArg))) console.log(pct(us), k);
