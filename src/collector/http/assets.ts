import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface Asset {
  type: string;
  body: Buffer;
}

// web/ sits beside src/ and dist/ in the package: the same relative path from either
const WEB = fileURLToPath(new URL('../../../web/', import.meta.url));
// the page formats durations with the command line's own function, as compiled (no copy of the rule)
const DURATION = fileURLToPath(new URL('../../../dist/util/duration.js', import.meta.url));

/**
 * The page's files, a fixed list read once at start: no request path ever reaches the file system.
 * uPlot comes from its npm package as published (a dependency), not a copy of ours.
 */
export function loadAssets(): { page: Asset; files: Map<string, Asset> } {
  const uplot = dirname(createRequire(import.meta.url).resolve('uplot/package.json'));
  const read = (path: string, type: string): Asset => ({ type, body: readFileSync(path) });
  const files = new Map<string, Asset>([
    ['/static/fleet.js', read(join(WEB, 'fleet.js'), 'text/javascript; charset=utf-8')],
    ['/static/fleet.css', read(join(WEB, 'fleet.css'), 'text/css; charset=utf-8')],
    ['/static/duration.js', read(DURATION, 'text/javascript; charset=utf-8')],
    ['/static/uPlot.iife.min.js', read(join(uplot, 'dist/uPlot.iife.min.js'), 'text/javascript; charset=utf-8')],
    ['/static/uPlot.min.css', read(join(uplot, 'dist/uPlot.min.css'), 'text/css; charset=utf-8')],
  ]);
  return { page: read(join(WEB, 'index.html'), 'text/html; charset=utf-8'), files };
}
