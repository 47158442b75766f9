#!/usr/bin/env node
// npm run docs: writes docs/configuration.md from the built schema (dist/config/schema.js; npm run
// docs builds first). test/docs.test.ts fails when the committed file differs from what this writes.
import { readFileSync, writeFileSync } from 'node:fs';
import { renderConfigDocs } from './config-docs/render.mjs';

const { configSchema } = await import('../dist/config/schema.js');
const file = new URL('../docs/configuration.md', import.meta.url);
const text = renderConfigDocs(configSchema);
let old = '';
try {
  old = readFileSync(file, 'utf8');
} catch {
  // first run: no file yet
}
if (old === text) {
  console.log('docs/configuration.md is up to date');
} else {
  writeFileSync(file, text);
  console.log('docs/configuration.md written');
}
