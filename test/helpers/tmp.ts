import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';

/** A temp folder removed after the test file. Short paths: unix socket paths are limited to 107 bytes. */
export function makeTmp(prefix = 'es-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a YAML config into dir and returns its path. */
export function writeConfig(dir: string, cfg: Record<string, unknown>, name = 'config.yaml'): string {
  const p = join(dir, name);
  writeFileSync(p, typeof cfg === 'string' ? cfg : stringify(cfg));
  return p;
}
