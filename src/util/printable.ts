// C0/C1 controls (ESC starts terminal escape sequences), DEL, lone surrogates, and the bidi
// overrides that reorder what a terminal or page shows
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]/gu;

/**
 * A string that came from a device (or anyone who can publish under the prefix), made safe to
 * print on an operator's terminal: every control character shown as \u{…}, never interpreted.
 */
export function printable(s: unknown): string {
  return String(s).replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

// JSON.stringify escapes C0 only: C1 controls (U+009B is CSI), DEL and bidi overrides pass through
const JSON_UNSAFE = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** JSON for a terminal: still valid JSON, with nothing in it a terminal would act on. */
export function printableJson(v: unknown): string {
  return JSON.stringify(v).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
