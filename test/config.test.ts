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
