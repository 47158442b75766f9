import { randomFillSync } from 'node:crypto';

// Time-ordered ids keep inserts at the right edge of the primary-key B-tree: far fewer WAL pages
// per transaction than random ids, less SD-card wear (docs/benchmarks.md, "UUIDv7").
// Random bytes come from a pooled hex string (one getrandom call per 256 ids), so that an id costs
// a few string slices even in V8's interpreter (docs/benchmarks.md, "Ingest").
const POOL_IDS = 256;
const pool = Buffer.allocUnsafe(POOL_IDS * 8);
let poolHex = '';
let poolPos = 0;
/** hex digit (by char code) → the variant digit 8, 9, a or b carrying its two low bits */
const VARIANT: string[] = [];
for (let i = 0; i < 16; i++) VARIANT[i.toString(16).charCodeAt(0)] = (8 | (i & 3)).toString(16);

let lastMs = -1;
let counter = 0;
/** "tttttttt-tttt-7" of lastMs, built once per millisecond */
let prefix = '';

/**
 * RFC 9562 UUIDv7. Within one millisecond a 12-bit counter in rand_a keeps ids
 * of this process strictly increasing (method 1 of RFC 9562 section 6.2).
 */
export function uuidv7(nowMs: number = Date.now()): string {
  if (nowMs > lastMs) {
    lastMs = nowMs;
    counter = 0;
    prefix = '';
  } else {
    counter++;
    if (counter > 0xfff) {
      // counter overflow: borrow the next millisecond so ordering holds
      lastMs++;
      counter = 0;
      prefix = '';
    }
  }
  if (prefix === '') {
    const h = (lastMs + 0x1000000000000).toString(16).slice(1); // 48 bits, 12 hex digits
    prefix = h.slice(0, 8) + '-' + h.slice(8) + '-7';
  }
  if (poolPos === poolHex.length) {
    randomFillSync(pool);
    poolHex = pool.toString('hex');
    poolPos = 0;
  }
  const p = poolPos;
  poolPos += 16;
  // 62 random bits: two in the variant digit, 60 in the 15 hex digits after it
  return (
    prefix + (counter + 0x1000).toString(16).slice(1) + '-' +
    VARIANT[poolHex.charCodeAt(p)] + poolHex.slice(p + 1, p + 4) + '-' + poolHex.slice(p + 4, p + 16)
  );
}

/** Milliseconds since the epoch encoded in a UUIDv7. */
export function uuidv7Time(id: string): number {
  return parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
}
