import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FleetPageServer } from '../../src/collector/http/server.js';
import { runCli } from '../helpers/process.js';
import { writeConfig } from '../helpers/tmp.js';
import { fleetFixture, startPage, XSS_DEVICE, XSS_DEVICE_SPACED, XSS_SENSOR, XSS_UNIT } from './fixture.js';

/** Debian's chromium (.ci/run installs it); playwright-core never downloads a browser of its own. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** Screenshots of both views land here for a person to look at (docs/img holds committed copies). */
export const ARTIFACTS = join(process.cwd(), '.test-artifacts', 'fleet-page');

let fx: Awaited<ReturnType<typeof fleetFixture>>;
let page: { server: FleetPageServer; base: string };
let browser: Browser;
let profile: string;
const dialogs: string[] = [];

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
  mkdirSync(ARTIFACTS, { recursive: true });
  fx = await fleetFixture();
  page = await startPage(fx.st);
  profile = mkdtempSync(join(tmpdir(), 'es-chromium-'));
  // playwright gives each launch a fresh --user-data-dir of its own; the flags keep Chromium off the network (FACTS.md)
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60_000,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    env: { ...process.env, HOME: profile },
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await page?.server.stop();
  await fx?.cleanup();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

async function open(path: string, o: { httpCredentials?: { username: string; password: string }; base?: string } = {}): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, httpCredentials: o.httpCredentials });
  const p = await ctx.newPage();
  // any alert() means device-supplied markup ran
  p.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  try {
    await p.goto((o.base ?? page.base) + path, { timeout: 30_000 });
  } catch (err) {
    await ctx.close();
    throw err;
  }
  return p;
}

describe('the fleet page in headless Chromium', () => {
  it('the fleet table shows the numbers of `edge-sensor fleet --json`, troubled devices first and marked', async () => {
    const cfg = writeConfig(mkdtempSync(join(tmpdir(), 'es-fp-')), { postgres: { url: fx.url, schema: fx.schema }, log: { level: 'warn' } }, 'collector.yaml');
    const cli = await runCli(['fleet', '--json', '--config', cfg]);
    expect(cli.code, cli.stderr).toBe(0);
    const fleet = JSON.parse(cli.stdout) as { devices: Array<Record<string, unknown> & { device: string; openGaps: { ranges: number } }> };

    const p = await open('/');
    await p.waitForSelector('#main[data-ready="true"] table#fleet', { timeout: 30_000 });
    const rows = await p.$$eval('table#fleet tbody tr', (trs) =>
      trs.map((tr) => ({
        device: tr.getAttribute('data-device'),
        trouble: tr.classList.contains('trouble'),
        cells: Object.fromEntries([...tr.querySelectorAll('td')].map((td) => [td.getAttribute('data-key'), { value: td.getAttribute('data-value'), text: td.textContent }])),
      })),
    );
    expect(rows.map((r) => r.device).sort()).toEqual(fleet.devices.map((d) => d.device).sort());
    for (const r of rows) {
      const d = fleet.devices.find((x) => x.device === r.device)!;
      for (const key of ['readingsStored', 'pending', 'droppedAnnounced', 'duplicatesAbsorbed', 'rejectedMessages', 'state']) {
        expect(r.cells[key].value, `${r.device} ${key}`).toBe(d[key] === null ? '' : String(d[key]));
      }
      expect(r.cells.openGaps.value).toBe(String(d.openGaps.ranges));
      // what a person reads is the same number
      expect(r.cells.readingsStored.text).toBe((d.readingsStored as number).toLocaleString('en-US'));
    }
    // troubled first: pi-garage (offline, behind, backlog) then pi-kitchen (open gaps), then the rest
    expect(rows.slice(0, 2).map((r) => [r.device, r.trouble])).toEqual([
      ['pi-garage', true],
      ['pi-kitchen', true],
    ]);
    expect(rows.slice(2).every((r) => !r.trouble)).toBe(true);
    expect(await p.$$eval('tr[data-device="pi-garage"] .badge', (b) => b.map((x) => x.textContent))).toEqual(['offline', 'behind', 'backlog']);

    // sortable: a click on "Stored" sorts by it, ascending, then descending
    await p.click('th[data-key="readingsStored"]');
    await p.waitForSelector('th[data-key="readingsStored"][aria-sort="ascending"]');
    const asc = await p.$$eval('td[data-key="readingsStored"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    expect(asc).toEqual([...asc].sort((a, b) => a - b));
    await p.click('th[data-key="readingsStored"]');
    await p.waitForSelector('th[data-key="readingsStored"][aria-sort="descending"]');
    const desc = await p.$$eval('td[data-key="readingsStored"]', (tds) => tds.map((td) => Number(td.getAttribute('data-value'))));
    expect(desc).toEqual([...asc].reverse());
    await p.click('th[data-key="trouble"]');
    await p.waitForSelector('th[data-key="trouble"][aria-sort]');
    await p.screenshot({ path: join(ARTIFACTS, 'fleet.png'), fullPage: true });
    await p.context().close();
  });

  it('markup in device ids, sensor names and units is shown as text and never runs', async () => {
    const p = await open('/');
    await p.waitForSelector('#main[data-ready="true"] table#fleet');
    const links = await p.$$eval('td[data-key="device"] a', (as) => as.map((a) => ({ text: a.textContent, href: a.getAttribute('href') })));
    expect(links).toContainEqual({ text: XSS_DEVICE, href: `/devices/${encodeURIComponent(XSS_DEVICE)}` });
    expect(links).toContainEqual({ text: XSS_DEVICE_SPACED, href: `/devices/${encodeURIComponent(XSS_DEVICE_SPACED)}` });
    expect(await p.$$('#main img, #main svg, #main b, #main i')).toHaveLength(0);
    await p.context().close();

    const d = await open(`/devices/${encodeURIComponent(XSS_DEVICE)}`);
    await d.waitForSelector('#main[data-ready="true"]');
    expect(await d.textContent('h1')).toContain(XSS_DEVICE);
    const h2 = await d.$$eval('#charts h2', (hs) => hs.map((h) => h.textContent));
    expect(h2).toEqual([`${XSS_SENSOR} ${XSS_UNIT}`]);
    expect(await d.$$('#main img, #main svg, h1 b')).toHaveLength(0);
    // uPlot puts the chart's title in as text too
    const titles = await d.$$eval('.u-title', (t) => t.map((x) => x.textContent));
    expect(titles).toHaveLength(1);
    expect(titles[0]).toContain(`${XSS_SENSOR} (${XSS_UNIT})`);
    await d.context().close();

    const spaced = await open(`/devices/${encodeURIComponent(XSS_DEVICE_SPACED)}`);
    await spaced.waitForSelector('#main[data-ready="true"]');
    expect(await spaced.textContent('h1')).toContain(XSS_DEVICE_SPACED);
    expect(await spaced.$$('#main img')).toHaveLength(0);
    await spaced.context().close();
    expect(dialogs).toEqual([]);
  });

  it('the device view draws a chart per sensor with data, holes as holes and gap bands, the backlog and the gap list', async () => {
    const p = await open('/devices/pi-kitchen?window=24h');
    await p.waitForSelector('#main[data-ready="true"]', { timeout: 30_000 });
    const charts = await p.$$eval('#charts .chart', (cs) => cs.map((c) => ({ sensor: c.getAttribute('data-sensor'), points: Number(c.getAttribute('data-points')), breaks: Number(c.getAttribute('data-breaks')), bands: Number(c.getAttribute('data-bands')), canvas: c.querySelectorAll('canvas').length })));
    expect(charts.map((c) => c.sensor)).toEqual(['humidity', 'temperature']);
    for (const c of charts) {
      expect(c.canvas).toBe(1);
      expect(c.points).toBeGreaterThan(30);
      // the open and the dropped hole: each a break in the line and a band behind it
      expect(c.breaks).toBe(2);
      expect(c.bands).toBe(2);
    }
    // the canvas has pixels of the mean line's colour, and of both band colours (translucent, on a transparent canvas)
    const colours = await p.$eval('#charts .chart[data-sensor="temperature"] canvas', (cv) => {
      const c = cv as unknown as { width: number; height: number; getContext(k: "2d"): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } | null };
      const px = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
      const near = (v: number, want: number) => Math.abs(v - want) <= 10;
      const seen = { line: 0, open: 0, dropped: 0 };
      for (let i = 0; i < px.length; i += 4) {
        const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
        if (r === 0x15 && g === 0x65 && b === 0xc0 && a === 255) seen.line++;
        if (near(r, 230) && near(g, 140) && b <= 10 && a > 40 && a < 90) seen.open++;
        if (near(r, 200) && near(g, 30) && near(b, 30) && a > 35 && a < 85) seen.dropped++;
      }
      return seen;
    });
    expect(colours.line).toBeGreaterThan(100);
    expect(colours.open).toBeGreaterThan(100);
    expect(colours.dropped).toBeGreaterThan(100);
    expect(Number(await p.getAttribute('#backlog', 'data-points'))).toBeGreaterThan(30);
    expect(await p.$$eval('#gaps tbody tr', (trs) => trs.map((tr) => tr.className))).toEqual(['gap open', 'gap dropped']);
    await p.screenshot({ path: join(ARTIFACTS, 'device.png'), fullPage: true });
    // the 1 h window: fewer, finer points
    await p.click('nav.windows a:text("1h")');
    await p.waitForURL(/window=1h/);
    await p.waitForSelector('#main[data-ready="true"] #charts .chart canvas');
    // 4 min readings in 15 s buckets: one reading a point, the last hour's 15 (give or take the edge)
    for (const n of await p.$$eval('#charts .chart', (cs) => cs.map((c) => Number(c.getAttribute('data-points'))))) {
      expect(n).toBeGreaterThanOrEqual(14);
      expect(n).toBeLessThanOrEqual(16);
    }
    await p.context().close();
    expect(dialogs).toEqual([]);
  });

  it('with basic auth configured, the page needs the credentials', async () => {
    const guarded = await startPage(fx.st, { auth: { type: 'basic', user: 'ops', passwordFile: '/unused' }, secret: 'pw-1' });
    try {
      // Chromium either shows the 401's body or ends the navigation with a credentials error (seen both
      // without credentials): no fleet table either way
      for (const httpCredentials of [undefined, { username: 'ops', password: 'nope' }, { username: 'root', password: 'pw-1' }]) {
        const denied = await open('/', { base: guarded.base, httpCredentials }).catch((e: Error) => e);
        if (denied instanceof Error) {
          expect(String(denied)).toMatch(/ERR_INVALID_AUTH_CREDENTIALS/);
        } else {
          expect(await denied.textContent('body')).toMatch(/authentication required/);
          expect(await denied.$('table#fleet')).toBeNull();
          await denied.context().close();
        }
      }
      const ok = await open('/', { base: guarded.base, httpCredentials: { username: 'ops', password: 'pw-1' } });
      await ok.waitForSelector('#main[data-ready="true"] table#fleet');
      expect(await ok.$$('table#fleet tbody tr')).toHaveLength(4);
      await ok.context().close();
    } finally {
      await guarded.server.stop();
    }
  });
});
