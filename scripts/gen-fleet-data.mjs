#!/usr/bin/env node
// Fills a PostgreSQL schema with a generated fleet (the collector's tables, made by its migrations),
// to try the fleet page or time its API on a big fleet (npm run bench -- --only fleetpage does that).
//   npm run -s build && node scripts/gen-fleet-data.mjs --url postgres://postgres@127.0.0.1:5432/fleetdemo [--schema public]
//     [--full | --quick] [--devices N] [--sensors N] [--step-s S] [--days D] [--dense-days D]
// The schema is dropped and made anew. Default: 1,000 devices, 2 sensors, a reading an hour, 365 days
// (17.5 million readings, a few minutes here); --full: every 15 min (70 million, the size).
import { parseArgs } from 'node:util';
import { DEFAULT, FULL, QUICK, generateFleet } from '../bench/lib/fleet-data.mjs';

const { values: a } = parseArgs({
  options: {
    url: { type: 'string' },
    schema: { type: 'string', default: 'public' },
    full: { type: 'boolean', default: false },
    quick: { type: 'boolean', default: false },
    devices: { type: 'string' },
    sensors: { type: 'string' },
    'step-s': { type: 'string' },
    days: { type: 'string' },
    'dense-days': { type: 'string' },
  },
});
if (!a.url) {
  console.error('usage: node scripts/gen-fleet-data.mjs --url postgres://USER@HOST:PORT/DATABASE [--schema NAME] [--full|--quick] [--devices N] [--sensors N] [--step-s S] [--days D] [--dense-days D]');
  process.exit(64);
}
const p = { ...(a.full ? FULL : a.quick ? QUICK : DEFAULT) };
for (const [flag, key] of [['devices', 'devices'], ['sensors', 'sensors'], ['step-s', 'stepS'], ['days', 'days'], ['dense-days', 'denseDays']]) if (a[flag] !== undefined) p[key] = Number(a[flag]);
console.error(`generating ${JSON.stringify(p)} into schema ${a.schema}`);
const r = await generateFleet(a.url, a.schema, p, (l) => console.error(l));
console.log(JSON.stringify({ ...p, readings: r.rows, readingsBytes: r.readingsBytes, seconds: r.times }));
