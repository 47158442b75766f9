import { afterAll, describe, expect, it } from 'vitest';
import { hostname } from 'node:os';
import { ConfigError, configPath, loadConfig, parseConfig } from '../src/config/load.js';
import { makeTmp, writeConfig } from './helpers/tmp.js';
import { runCli } from './helpers/process.js';

const tmp = makeTmp();
afterAll(tmp.cleanup);

function problems(input: unknown): string[] {
  try {
    parseConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('fills every default from an empty file', () => {
    const c = parseConfig({});
    expect(c.device.id).toBe(hostname());
    expect(c.database).toMatchObject({ path: './data/edge-sensor.db', synchronous: 'FULL' });
    expect(c.mqtt).toMatchObject({ url: 'mqtt://127.0.0.1:1883', topicPrefix: 'edge-sensor', protocolVersion: 5 });
    expect(c.sync).toMatchObject({ batchSize: 500, maxInFlight: 8, intervalMs: 1000, publishTimeoutMs: 10000 });
    expect(c.sync.retry).toEqual({ initialDelayMs: 1000, maxDelayMs: 300000, maxAttempts: 10 });
    expect(c.sensors.map((s) => s.type)).toEqual(['simulated', 'cpu-load']);
    // the default sensors get their own defaults too (a simulated sensor without count read [undefined])
    expect(c.sensors[0]).toMatchObject({ name: 'sim-temp', count: 1, min: 15, max: 30, step: 0.5, readAtStart: false });
    expect(c.log.level).toBe('info');
  });

  it('accepts the documented example and fills sensor defaults', () => {
    const c = parseConfig({
      device: { id: 'pi-kitchen' },
      sync: { batchSize: 100, retry: { maxAttempts: 3 } },
      sensors: [{ type: 'simulated', name: 's', schedule: '* * * * * *', count: 20, seed: 7 }, { type: 'disk', name: 'root', schedule: '*/30 * * * * *' }],
      retention: { syncedMaxAge: '2d' },
    });
    expect(c.sync.retry).toEqual({ initialDelayMs: 1000, maxDelayMs: 300000, maxAttempts: 3 });
    expect(c.sensors[0]).toMatchObject({ count: 20, seed: 7, min: 15, max: 30 });
    expect(c.sensors[1]).toMatchObject({ mount: '/', measure: 'used-percent' });
    expect(c.retention.syncedMaxAge).toBe(2 * 86_400_000);
  });

  it('rejects an unknown key with its path', () => {
    expect(problems({ colour: 'blue' })).toEqual(['colour: unknown key: either a typo or an option that does not exist']);
    expect(problems({ sync: { retry: { maxAtempts: 3 } } })[0]).toMatch(/^sync\.retry\.maxAtempts: unknown key/);
    expect(problems({ sensors: [{ type: 'cpu-load', name: 'x', schedule: '* * * * *', colour: 1 }] })[0]).toMatch(/^sensors\[0\]\.colour: unknown key/);
  });

  it('names the expected type and the value it got', () => {
    const p = problems({ sync: { batchSize: 'lots' } });
    expect(p).toHaveLength(1);
    expect(p[0]).toMatch(/^sync\.batchSize: .*expected number.*got "lots"/);
    expect(problems({ mqtt: { protocolVersion: 3 } })[0]).toMatch(/^mqtt\.protocolVersion: /);
    expect(problems({ database: { synchronous: 'OFF' } })[0]).toMatch(/^database\.synchronous: .*FULL.*NORMAL/);
  });

  it('reports several problems at once', () => {
    const p = problems({
      colour: 'blue',
      sync: { batchSize: 0, maxInFlight: 'many' },
      sensors: [
        { type: 'simulated', name: 'a', schedule: 'every second' },
        { type: 'thermometer', name: 'b', schedule: '* * * * * *' },
        { type: 'cpu-load', name: 'a', schedule: '* * * * * *' },
      ],
      mqtt: { url: 'http://x' },
    });
    const paths = p.map((l) => l.split(':')[0]);
    expect(paths).toEqual(
      expect.arrayContaining(['colour', 'sync.batchSize', 'sync.maxInFlight', 'sensors[0].schedule', 'sensors[1].type', 'sensors[2].name', 'mqtt.url']),
    );
    expect(p.length).toBeGreaterThanOrEqual(7);
  });

  it('validates cross-field rules', () => {
    expect(problems({ sync: { retry: { initialDelayMs: 5000, maxDelayMs: 100 } } })[0]).toMatch(/^sync\.retry\.maxDelayMs: expected maxDelayMs >= initialDelayMs/);
    expect(problems({ sensors: [{ type: 'simulated', name: 's', schedule: '* * * * * *', min: 5, max: 1 }] })[0]).toMatch(/^sensors\[0\]\.max: expected max > min/);
    expect(problems({ device: { id: 'a/b' } })[0]).toMatch(/^device\.id: /);
    expect(problems({ retention: { syncedMaxAge: 'soon' } })[0]).toMatch(/^retention\.syncedMaxAge: expected a duration/);
  });

  it('reads YAML, treats empty sections as defaults, and reports YAML errors with a line', () => {
    const ok = writeConfig(tmp.dir, 'device:\n  # nothing here\nsync:\n  batchSize: 42\n' as never, 'ok.yaml');
    expect(loadConfig(ok).sync.batchSize).toBe(42);
    const bad = writeConfig(tmp.dir, 'sync:\n  batchSize: [1\n' as never, 'bad.yaml');
    expect(() => loadConfig(bad)).toThrow(/line \d+/);
    const dup = writeConfig(tmp.dir, 'sync: {}\nsync: {}\n' as never, 'dup.yaml');
    expect(() => loadConfig(dup)).toThrow(ConfigError);
    expect(() => loadConfig(`${tmp.dir}/missing.yaml`)).toThrow(/file not found/);
  });

  it('chooses the file from --config, then EDGE_SENSOR_CONFIG, then the default', () => {
    expect(configPath('/a.yaml', { EDGE_SENSOR_CONFIG: '/b.yaml' })).toBe('/a.yaml');
    expect(configPath(undefined, { EDGE_SENSOR_CONFIG: '/b.yaml' })).toBe('/b.yaml');
    expect(configPath(undefined, {})).toMatch(/config\/default\.yaml$/);
  });

  it('check-config exits 78 naming every problem, and 0 on a valid file', async () => {
    const bad = writeConfig(tmp.dir, { device: { id: 'x' }, colour: 'blue', sync: { batchSize: 'lots' } }, 'cli-bad.yaml');
    const r = await runCli(['check-config', '--config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/colour: unknown key/);
    expect(r.stderr).toMatch(/sync\.batchSize: .*expected number/);
    const good = writeConfig(tmp.dir, { device: { id: 'x' } }, 'cli-good.yaml');
    const g = await runCli(['check-config'], { EDGE_SENSOR_CONFIG: good });
    expect(g.code).toBe(0);
    expect(g.stdout).toMatch(/ok/);
  });

  it('run refuses a bad config with 78 before touching the database', async () => {
    const db = `${tmp.dir}/never.db`;
    const bad = writeConfig(tmp.dir, { database: { path: db }, sync: { maxInFlight: -1 } }, 'run-bad.yaml');
    const r = await runCli(['run', '--config', bad]);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/sync\.maxInFlight/);
    const { existsSync } = await import('node:fs');
    expect(existsSync(db)).toBe(false);
  });

  it('LOG_LEVEL overrides log.level, and a wrong one is a config error (78), not a crash', async () => {
    const file = writeConfig(tmp.dir, { device: { id: 'x' }, log: { level: 'warn' } }, 'level.yaml');
    expect(loadConfig(file, {}).log.level).toBe('warn');
    expect(loadConfig(file, { LOG_LEVEL: 'debug' }).log.level).toBe('debug');
    const db = `${tmp.dir}/level.db`;
    const run = writeConfig(tmp.dir, { database: { path: db } }, 'level-run.yaml');
    const r = await runCli(['run', '--config', run], { LOG_LEVEL: 'verbose' });
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/LOG_LEVEL \(environment\): expected one of .*debug.* \(got "verbose"\)/);
    expect(r.stderr).not.toMatch(/    at /); // a message, not a stack trace
    const { existsSync } = await import('node:fs');
    expect(existsSync(db)).toBe(false);
  });
});

describe('config files that are bombs, loops or not config files at all', () => {
  const bad = async (name: string, text: string | Buffer) => {
    const p = writeConfig(tmp.dir, {}, name);
    (await import('node:fs')).writeFileSync(p, text);
    return runCli(['check-config', '--config', p]);
  };

  it('a YAML alias bomb exits 78 with one line, not a stack trace', async () => {
    const levels = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (const l of 'bcdefg') levels.push(`${l}: &${l} [${Array(9).fill(`*${String.fromCharCode(l.charCodeAt(0) - 1)}`).join(',')}]`);
    levels.push(`h: [${Array(9).fill('*g').join(',')}]`);
    const r = await bad('bomb.yaml', levels.join('\n') + '\n');
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/resource exhaustion/);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('a self-referencing alias exits 78 and names where', async () => {
    const r = await bad('self.yaml', 'device: &d\n  id: x\n  self: *d\n');
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/device\.self: .*alias/);
  });

  it('a file that never ends (/dev/zero) is refused at its size limit, quickly', async () => {
    const r = await runCli(['check-config', '--config', '/dev/zero'], {}, undefined, 20_000);
    expect(r.code).toBe(78);
    expect(r.stderr).toMatch(/at most 1048576 bytes/);
  });

  it('a binary blob lists a bounded number of problems', async () => {
    const r = await bad('blob.yaml', `device: !!binary |\n  ${Buffer.alloc(150_000, 'x').toString('base64')}\n`);
    expect(r.code).toBe(78);
    expect(r.stderr.split('\n').length).toBeLessThan(60);
    const top = await bad('top.yaml', `!!binary |\n  ${Buffer.alloc(150_000, 'x').toString('base64')}\n`);
    expect(top.code).toBe(78);
    expect(top.stderr).toMatch(/expected a YAML mapping/);
  });

  it('values that passed and failed later are refused with their path', () => {
    expect(problems({ device: { id: 'pi\u0000x' } })).toEqual([expect.stringMatching(/^device\.id: expected no control characters/)]);
    expect(problems({ device: { id: 'pi\u001b[31m' } })).toEqual([expect.stringMatching(/^device\.id: /)]);
    expect(problems({ mqtt: { topicPrefix: 'a\u0007b' } })).toEqual([expect.stringMatching(/^mqtt\.topicPrefix: /)]);
    expect(problems({ retention: { syncedMaxAge: '99999999999999d' } })).toEqual([expect.stringMatching(/^retention\.syncedMaxAge: expected retention\.syncedMaxAge between/)]);
    expect(problems({ retention: { maxDatabaseBytes: 1 } })).toEqual([expect.stringMatching(/^retention\.maxDatabaseBytes: expected .* 0 \(off\) or between 1000000/)]);
    expect(problems({ retention: { maxDatabaseBytes: '1e30' } })).toHaveLength(1);
    expect(problems({ sensors: [{ type: 'simulated', name: 's', schedule: '* * * * * *', unit: '\u001b[2J' }] })).toEqual([expect.stringMatching(/^sensors\[0\]\.unit: /)]);
    expect(problems({ database: { path: 'a\u0000b' } })).toEqual([expect.stringMatching(/^database\.path: expected a path without NUL/)]);
    expect(parseConfig({ retention: { maxDatabaseBytes: 0, syncedMaxAge: '10d' } }).retention).toMatchObject({ maxDatabaseBytes: 0, syncedMaxAge: 864_000_000 });
  });
});
