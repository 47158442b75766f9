/**
 * PostgreSQL array literals for the bulk insert, built here rather than by pg's generic encoder:
 * most columns hold values the decoder has already checked to need no quoting (UUIDs, ISO
 * times, numbers), and the text columns repeat a handful of values (device, sensor, unit).
 */

const UNQUOTED = /^[0-9A-Za-z:.+-]+$/;

/** Values that need no quoting in an array literal: numbers, and strings the decoder checked (UUIDs, ISO times). */
export function plainArray(values: ReadonlyArray<number | string>): string {
  // a comma or a brace slipped in here would shift every later column of the insert: never
  for (const v of values) if (typeof v === 'string' && !UNQUOTED.test(v)) throw new Error(`not a plain array element: ${JSON.stringify(v).slice(0, 80)}`);
  return '{' + values.join(',') + '}';
}

export function nullableNumberArray(values: ReadonlyArray<number | null>): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    out += v === null ? 'NULL' : String(v);
  }
  return out + '}';
}

export function booleanArray(values: readonly boolean[]): string {
  let out = '{';
  for (let i = 0; i < values.length; i++) out += (i > 0 ? ',' : '') + (values[i] ? 't' : 'f');
  return out + '}';
}

/** Text elements, always quoted (an unquoted NULL would be a null), repeated values encoded once. */
export function textArray(values: ReadonlyArray<string | null>): string {
  const memo = new Map<string, string>();
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    if (i > 0) out += ',';
    const v = values[i];
    if (v === null) {
      out += 'NULL';
      continue;
    }
    let e = memo.get(v);
    if (e === undefined) {
      e = '"' + v.replace(/[\\"]/g, '\\$&') + '"';
      if (memo.size < 10_000) memo.set(v, e);
    }
    out += e;
  }
  return out + '}';
}
