/** A value as a sensor (or an operator's `record`) produced it, before it is stored. */
export interface NewReading {
  sensor: string;
  value: number | null;
  unit: string | null;
  description?: string | null;
}

/** The readings of one sampling tick: one timestamp, one set of flags. */
export interface Tick {
  tsMs: number;
  flags: number;
  readings: readonly NewReading[];
}

/** flags bit: the wall clock was not trustworthy when the reading was taken */
export const FLAG_CLOCK_SUSPECT = 1;

/** Sensor names: what the config, `record` and remote commands accept (part of payloads, shown in dashboards). */
export const SENSOR_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
export const SENSOR_NAME_RULE = 'expected 1-64 characters of A-Z a-z 0-9 _ . : -';
/** Long enough for a note, short enough that one reading always fits a broker's packet size with room to spare. */
export const DESCRIPTION_MAX_CHARS = 1000;
export const UNIT_MAX_CHARS = 32;
// controls would reach terminals and pages downstream; tab and newline are fine in a note
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\ud800-\udfff\ufffe\uffff]/u;
const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;

export interface ReadingProblem {
  field: 'sensor' | 'amount' | 'unit' | 'description';
  /** "expects ..., got ...": the caller puts the field's name in front, as its users spell it */
  message: string;
}

/**
 * The rules for a reading someone typed or sent (CLI `record`, remote commands): every problem,
 * or none. One place, so that every entry point refuses the same things.
 */
export function manualReadingProblems(r: { sensor: unknown; value: unknown; unit?: unknown; description?: unknown }): ReadingProblem[] {
  const out: ReadingProblem[] = [];
  if (typeof r.sensor !== 'string' || !SENSOR_NAME.test(r.sensor)) out.push({ field: 'sensor', message: `${SENSOR_NAME_RULE.replace(/^expected/, 'expects')}, got ${show(r.sensor)}` });
  if (typeof r.value !== 'number' || !Number.isFinite(r.value)) out.push({ field: 'amount', message: `expects a number (decimal, e.g. 21.5 or -3), got ${show(r.value)}` });
  const u = r.unit;
  if (u !== undefined && u !== null && (typeof u !== 'string' || u.length > UNIT_MAX_CHARS || CONTROL.test(u) || /[\t\n]/.test(u))) {
    out.push({ field: 'unit', message: `expects at most ${UNIT_MAX_CHARS} printable characters, got ${show(u)}` });
  }
  const d = r.description;
  if (d !== undefined && d !== null && (typeof d !== 'string' || d.length > DESCRIPTION_MAX_CHARS || CONTROL.test(d))) {
    out.push({ field: 'description', message: `expects at most ${DESCRIPTION_MAX_CHARS} characters without control characters, got ${show(d)}` });
  }
  return out;
}

/** A decimal number as people write it ("21.5", "-3", "1e3"); hex, binary, octal and "Infinity" are refused. */
export function parseDecimal(text: string): number | undefined {
  const t = text.trim();
  if (!DECIMAL.test(t)) return undefined;
  const n = Number(t);
  return Number.isFinite(n) ? n : undefined;
}

function show(v: unknown): string {
  if (typeof v === 'string') return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}... (${v.length} characters)` : JSON.stringify(v);
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 40 ? s.slice(0, 40) + '...' : s;
}
