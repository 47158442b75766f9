import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, Mosquitto } from '../helpers/mosquitto.js';
import { runCli, waitFor } from '../helpers/process.js';
import { testSchema } from '../helpers/postgres.js';
import { makeTmp } from '../helpers/tmp.js';
import { collectorConfig, FakeDevice, killLeftovers, range, startCollector, stopCollector } from '../collector/helpers.js';

const tmp = makeTmp('es-fpc-');
let mosq: Mosquitto;
beforeAll(async () => {
  mosq = await Mosquitto.start(join(tmp.dir, 'mosq'));
});
afterAll(async () => {
  await killLeftovers();
  await mosq?.stop();
  tmp.cleanup();
});

describe('edge-sensor collect with http.listen', () => {
  it('serves the page and the API of what it stores, behind its bearer token, and stops cleanly', async () => {
    const s = await testSchema('fpc');
    const port = await freePort();
    const tokenFile = join(tmp.dir, 'token');
    writeFileSync(tokenFile, 'page-token\n', { mode: 0o600 });
    const prefix = 'fpc';
    const files = collectorConfig(tmp.dir, 'fpc', { url: mosq.url, pgUrl: s.url, schema: s.schema, prefix, extra: { http: { listen: `127.0.0.1:${port}`, auth: { type: 'bearer', tokenFile } } } });
    const p = await startCollector(files);
    const dev = await FakeDevice.connect(mosq.url, 'pi-http', prefix);
    try {
      const listening = p.logLines().find((l) => l.msg === 'fleet page listening');
      expect(listening).toMatchObject({ address: '127.0.0.1', port, auth: 'bearer' });
      await dev.readings(range(1, 20));
      const auth = { headers: { Authorization: 'Bearer page-token' } };
      const devices = await waitFor(async () => {
        const r = await fetch(`http://127.0.0.1:${port}/api/devices`, auth);
        const body = (await r.json()) as { devices: Array<{ device: string; readingsStored: number }> };
        return body.devices.find((d) => d.device === 'pi-http' && d.readingsStored === 20) ? body : undefined;
      }, 20_000, 'the API lists pi-http with its 20 readings');
      expect(devices!.devices).toHaveLength(1);
      expect((await fetch(`http://127.0.0.1:${port}/api/devices`)).status).toBe(401);
      const page = await fetch(`http://127.0.0.1:${port}/devices/pi-http`, auth);
      expect(page.status).toBe(200);
      expect(await page.text()).toMatch(/<script src="\/static\/fleet.js"/);
    } finally {
      await dev.end();
      expect(await stopCollector(p)).toBe(0);
      await s.cleanup();
    }
    // the port is given back at stop
    await expect(fetch(`http://127.0.0.1:${port}/`)).rejects.toThrow();
  });

  it('exits non-zero with a log line when the address is taken', async () => {
    const s = await testSchema('fpc2');
    const blocker = (await import('node:net')).createServer();
    const port = await freePort();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const files = collectorConfig(tmp.dir, 'fpc2', { url: mosq.url, pgUrl: s.url, schema: s.schema, prefix: 'fpc2', extra: { http: { listen: `127.0.0.1:${port}` } } });
      const err = await startCollector(files).catch((e: Error) => e);
      expect(String(err)).toMatch(/exited 1.*EADDRINUSE/s);
    } finally {
      blocker.close();
      await s.cleanup();
    }
  });

  it('collect --check reads the page\'s password file and names the page; a missing one is a config error', async () => {
    const pw = join(tmp.dir, 'page-pw');
    const file = join(tmp.dir, 'check.yaml');
    writeFileSync(file, `postgres: { schema: fleet }\nhttp: { listen: "127.0.0.1:8080", auth: { type: basic, user: ops, passwordFile: ${pw} } }\n`);
    const missing = await runCli(['collect', '--check', '--config', file]);
    expect(missing.code).toBe(78);
    expect(missing.stderr).toMatch(/http\.auth\.passwordFile/);
    writeFileSync(pw, 'secret\n', { mode: 0o600 });
    const ok = await runCli(['collect', '--check', '--config', file]);
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/fleet page on 127\.0\.0\.1:8080\)/);
    expect(ok.stdout + ok.stderr).not.toMatch(/secret/);
  });
});
