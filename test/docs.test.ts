import { describe, expect, it } from 'vitest';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { configSchema } from '../src/config/schema.js';
import { parseConfig } from '../src/config/load.js';
import { isCollectorConfig, parseCollectorConfig } from '../src/collector/config.js';
import { renderConfigDocs } from '../scripts/config-docs/render.mjs';

// The documentation as code: the configuration reference is what the schema says, the README
// stays short, its examples are valid configs and its links lead somewhere.

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const read = (rel: string) => readFileSync(join(ROOT, rel), 'utf8');
const pages = ['README.md', 'CONTRIBUTING.md', ...readdirSync(join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];

describe('docs/configuration.md', () => {
  it('is what npm run docs writes from the schema (run it and commit the result)', () => {
    expect(read('docs/configuration.md') === renderConfigDocs(configSchema), 'docs/configuration.md is stale: run npm run docs').toBe(true);
  });

  it('documents every key: a key without a description fails the generator', () => {
    const text = renderConfigDocs(configSchema);
    for (const key of ['device.id', 'mqtt.tls.caFile', 'sync.retry.maxAttempts', 'retention.onFull', 'log.level']) expect(text).toContain(`| \`${key}\` |`);
    for (const type of ['simulated', 'cpu-temperature', 'cpu-load', 'memory', 'disk', 'ds18b20', 'iio', 'pi-throttled']) expect(text).toContain(`### \`${type}\``);
    // deterministic: nothing of this machine (the host name is the default device.id) gets in
    expect(text).toContain('| `device.id` | string matching `^[^/#+\\s]{1,128}$` | the host name |');
  });
});

describe('README.md', () => {
  it('stays short: at most 12 KB, the rest in docs/', () => {
    expect(statSync(join(ROOT, 'README.md')).size).toBeLessThanOrEqual(12_288);
  });

  it('gives the two commands', () => {
    const readme = read('README.md');
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm ci && npm test');
  });
});

describe.each(pages)('%s', (page) => {
  const text = read(page);

  it('has only valid configurations in its YAML examples', () => {
    for (const [, block] of text.matchAll(/```yaml\n([\s\S]*?)```/g)) {
      // a collector's config (it has a postgres section) is checked as one, as check-config does
      const input = parse(block) ?? {};
      const check = isCollectorConfig(input) ? parseCollectorConfig : parseConfig;
      expect(() => check(input, `${page} example`), block).not.toThrow();
    }
  });

  it('links only to files and headings that exist', () => {
    const broken: string[] = [];
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const [file, anchor] = target.split('#');
      const path = file ? join(dirname(join(ROOT, page)), file) : join(ROOT, page);
      if (!existsSync(path)) {
        broken.push(`${target} (no file ${relative(ROOT, path)})`);
        continue;
      }
      if (anchor && path.endsWith('.md') && !anchors(readFileSync(path, 'utf8')).has(anchor)) broken.push(`${target} (no such heading)`);
    }
    expect(broken).toEqual([]);
  });
});

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes, repeats numbered. */
function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  const body = markdown.replace(/```[\s\S]*?```/g, '');
  for (const [, heading] of body.matchAll(/^#{1,6}\s+(.+)$/gm)) {
    const slug = heading
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .trim()
      .replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}
