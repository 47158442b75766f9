// pg (8.x) probes for a Cloudflare Worker at import: without a global `navigator` (Node 20 has
// none, Node 21+ has one) it builds a `Response`, which loads Node's fetch, which needs
// WebAssembly; the edge-sensor command runs node with --lite-mode, which has no WebAssembly, and
// the import throws. A `navigator` as Node 21+ defines it ends the probe before that.
// Imported before pg by every module that imports pg.
if (typeof (globalThis as { navigator?: unknown }).navigator === 'undefined') {
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent: `Node.js/${process.versions.node.split('.')[0]}` }, configurable: true, writable: true });
}
export {};
