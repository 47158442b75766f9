import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, appendFileSync, constants, copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../src/config/load.js';
import { parseConfig } from '../src/config/load.js';
import { parseCollectorConfig } from '../src/collector/config.js';
import { EXIT } from '../src/exit-codes.js';
import { makeTmp } from './helpers/tmp.js';

const PROJECT = fileURLToPath(new URL('..', import.meta.url));
const UNIT = join(PROJECT, 'systemd/edge-sensor.service');
const COLLECTOR_UNIT = join(PROJECT, 'systemd/edge-sensor-collector.service');
const tmp = makeTmp('es-inst-');
afterAll(tmp.cleanup);

/** key → values of a unit file's assignments (a key may repeat). */
function unitFile(path: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const t = line.trim();
    if (!t || t.startsWith('#') || t.startsWith('[')) continue;
    const i = t.indexOf('=');
    const k = t.slice(0, i);
    m.set(k, [...(m.get(k) ?? []), t.slice(i + 1)]);
  }
  return m;
}
const one = (u: Map<string, string[]>, k: string) => u.get(k)?.at(-1) ?? '';

function sh(script: string, args: string[]) {
  return spawnSync('bash', [join(PROJECT, 'scripts', script), ...args], { cwd: PROJECT, encoding: 'utf8', timeout: 120_000 });
}

const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;
const hasSystemctl = spawnSync('systemctl', ['--version']).status === 0;

describe('the unit file', () => {
  const u = unitFile(UNIT);

  it('matches the daemon: notify, exit codes that a restart cannot fix, a stop timeout beyond the drain', () => {
    expect(one(u, 'Type')).toBe('notify');
    // the daemon notifies through systemd-notify, a child process
    expect(one(u, 'NotifyAccess')).toBe('all');
    expect(one(u, 'Restart')).toBe('on-failure');
    expect(one(u, 'RestartPreventExitStatus').split(/\s+/).map(Number).sort()).toEqual([EXIT.DATA, EXIT.CONFIG].sort());
    const sec = (v: string) => Number(/^(\d+)s?$/.exec(v)?.[1]);
    const drainMs = parseConfig({}).sync.shutdownTimeoutMs;
    expect(sec(one(u, 'TimeoutStopSec')) * 1000).toBeGreaterThan(drainMs + 10_000);
    expect(sec(one(u, 'WatchdogSec'))).toBeGreaterThanOrEqual(10);
  });

  it('puts the service config database in its StateDirectory and reads the config from its ConfigurationDirectory', () => {
    const state = `/var/lib/${one(u, 'StateDirectory')}`;
    const cfg = loadConfig(join(PROJECT, 'config/service.yaml'));
    expect(dirname(cfg.database.path)).toBe(state);
    expect(one(u, 'WorkingDirectory')).toBe(state);
    expect(one(u, 'ExecStart')).toContain(`--config /etc/${one(u, 'ConfigurationDirectory')}/config.yaml`);
  });

  it.skipIf(!hasAnalyze)('passes systemd-analyze verify and scores 2.0 or lower on systemd-analyze security', () => {
    const verify = spawnSync('systemd-analyze', ['verify', UNIT], { encoding: 'utf8' });
    // the program is not installed on this machine; anything else is a real complaint
    const complaints = (verify.stdout + verify.stderr).split('\n').filter((l) => l && !/is not executable|No such file or directory|not found/.test(l));
    expect(complaints).toEqual([]);
    const security = execFileSync('systemd-analyze', ['security', '--offline=true', UNIT], { encoding: 'utf8' });
    const score = Number(/exposure level for .*: ([\d.]+)/.exec(security)?.[1]);
    expect(score).toBeLessThanOrEqual(2.0);
  });
});

describe("the collector's unit file", () => {
  const u = unitFile(COLLECTOR_UNIT);

  it('runs edge-sensor collect like the daemon: notify, watchdog, exit codes a restart cannot fix, its config in /etc/edge-sensor', () => {
    expect(one(u, 'Type')).toBe('notify');
    expect(one(u, 'NotifyAccess')).toBe('all');
    expect(one(u, 'Restart')).toBe('on-failure');
    expect(one(u, 'RestartPreventExitStatus').split(/\s+/).map(Number).sort()).toEqual([EXIT.DATA, EXIT.CONFIG].sort());
    const sec = (v: string) => Number(/^(\d+)s?$/.exec(v)?.[1]);
    // the transaction in progress may take a statement timeout to end
    expect(sec(one(u, 'TimeoutStopSec')) * 1000).toBeGreaterThan(parseCollectorConfig({ postgres: {} }).postgres.statementTimeoutMs);
    expect(sec(one(u, 'WatchdogSec'))).toBeGreaterThanOrEqual(10);
    expect(one(u, 'ExecStart')).toMatch(/ \/opt\/edge-sensor\/dist\/cli\/main\.js collect --config \/etc\/edge-sensor\/collector\.yaml$/);
    expect(one(u, 'User')).toBe('edge-sensor');
  });

  it.skipIf(!hasAnalyze)('passes systemd-analyze verify and scores 2.0 or lower on systemd-analyze security', () => {
    const verify = spawnSync('systemd-analyze', ['verify', COLLECTOR_UNIT], { encoding: 'utf8' });
    const complaints = (verify.stdout + verify.stderr).split('\n').filter((l) => l && !/is not executable|No such file or directory|not found/.test(l));
    expect(complaints).toEqual([]);
    const security = execFileSync('systemd-analyze', ['security', '--offline=true', COLLECTOR_UNIT], { encoding: 'utf8' });
    const score = Number(/exposure level for .*: ([\d.]+)/.exec(security)?.[1]);
    expect(score).toBeLessThanOrEqual(2.0);
  });
});

describe('npm pack', () => {
  it('ships what a device needs and nothing else', () => {
    const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: PROJECT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const files = (JSON.parse(out)[0].files as Array<{ path: string }>).map((f) => f.path);
    for (const f of ['package.json', 'README.md', 'docs/configuration.md', 'docs/raspberry-pi.md', 'LICENSE', 'dist/cli/main.js', 'config/service.yaml', 'systemd/edge-sensor.service', 'scripts/install.sh', 'scripts/uninstall.sh']) {
      expect(files).toContain(f);
    }
    expect(files.filter((f) => !/^(dist\/.*\.js|dist\/build-info\.json|config\/.*\.yaml|systemd\/.*|scripts\/.*\.sh|package\.json|README\.md|docs\/[a-z0-9-]+\.md|web\/[a-z-]+\.(html|js|css)|LICENSE|npm-shrinkwrap\.json)$/.test(f))).toEqual([]);
  });
});

describe('scripts/install.sh into a root folder', () => {
  const root = join(tmp.dir, 'root');
  const at = (p: string) => join(root, p);

  it('lays out every file where the unit expects it', () => {
    const r = sh('install.sh', ['--root', root]);
    expect(r.stderr + r.stdout).toMatch(/installed edge-sensor/);
    expect(r.status).toBe(0);

    const u = unitFile(at('etc/systemd/system/edge-sensor.service'));
    const [node, ...args] = one(u, 'ExecStart').split(/\s+/);
    const nodeFlags = args.filter((a, i) => a.startsWith('--') && args.slice(0, i).every((b) => b.startsWith('--')));
    const [main, cmd, flag, config] = args.slice(nodeFlags.length);
    // the service runs node with the flags of the edge-sensor command's shebang
    expect(nodeFlags).toEqual(readFileSync(join(PROJECT, 'src/cli/main.ts'), 'utf8').split('\n', 1)[0].split(/\s+/).slice(3));
    expect([cmd, flag]).toEqual(['run', '--config']);
    accessSync(node, constants.X_OK); // the node the service runs lives outside the root
    expect(main).toBe('/opt/edge-sensor/dist/cli/main.js');
    expect(existsSync(at(main))).toBe(true);
    expect(existsSync(at(config))).toBe(true);
    expect(existsSync(at(one(u, 'WorkingDirectory')))).toBe(true);
    expect(lstatSync(at('etc/edge-sensor')).mode & 0o777).toBe(0o750);
    expect(lstatSync(at(config)).mode & 0o777).toBe(0o600);
    expect(lstatSync(at('var/lib/edge-sensor')).mode & 0o777).toBe(0o750);
    // the default config of the service keeps its database in the unit's StateDirectory
    expect(loadConfig(at(config)).database.path).toBe(`/var/lib/${one(u, 'StateDirectory')}/edge-sensor.db`);

    // production dependencies only, and the native module loads
    const modules = readdirSync(at('opt/edge-sensor/node_modules'));
    expect(modules).toContain('better-sqlite3');
    expect(modules).not.toContain('typescript');
    expect(modules).not.toContain('vitest');
    expect(existsSync(at('opt/edge-sensor/src'))).toBe(false);
    expect(existsSync(at('opt/edge-sensor/test'))).toBe(false);

    // the CLI wrapper runs the same program with the service's config
    const cli = readFileSync(at('usr/local/bin/edge-sensor'), 'utf8');
    accessSync(at('usr/local/bin/edge-sensor'), constants.X_OK);
    expect(cli).toContain(`${node} ${main}`);
    expect(cli).toContain('EDGE_SENSOR_CONFIG:-/etc/edge-sensor/config.yaml');

    // the installed copy runs
    const check = spawnSync(node, [at(main), 'check-config', '--config', at(config)], { encoding: 'utf8' });
    expect(check.status).toBe(0);
    if (hasSystemctl) expect(lstatSync(at('etc/systemd/system/multi-user.target.wants/edge-sensor.service')).isSymbolicLink()).toBe(true);
  });

  it('upgrades in place: keeps the operator config, refreshes the example, reuses the dependencies', () => {
    appendFileSync(at('etc/edge-sensor/config.yaml'), '# edited by the operator\n');
    const r = sh('install.sh', ['--root', root]);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/dependencies unchanged/);
    expect(readFileSync(at('etc/edge-sensor/config.yaml'), 'utf8')).toContain('# edited by the operator');
    expect(readFileSync(at('etc/edge-sensor/config.yaml.example'), 'utf8')).toBe(readFileSync(join(PROJECT, 'config/service.yaml'), 'utf8'));
    expect(existsSync(at('opt/edge-sensor.new')) || existsSync(at('opt/edge-sensor.old'))).toBe(false);
  });

  it('refuses an upgrade that the existing config would make fail, and changes nothing', () => {
    const before = readFileSync(at('opt/edge-sensor/.deps-stamp'), 'utf8');
    const cfg = readFileSync(at('etc/edge-sensor/config.yaml'), 'utf8');
    writeFileSync(at('etc/edge-sensor/config.yaml'), cfg + 'bogus: 1\n');
    const r = sh('install.sh', ['--root', root]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/bogus: unknown key/);
    expect(r.stderr).toMatch(/Nothing was changed/);
    expect(readFileSync(at('opt/edge-sensor/.deps-stamp'), 'utf8')).toBe(before);
    writeFileSync(at('etc/edge-sensor/config.yaml'), cfg);
  });

  it('installs the collector on request: its unit, its config (kept on upgrades) and the CLI pointing at it', () => {
    expect(existsSync(at('etc/systemd/system/edge-sensor-collector.service'))).toBe(false);
    const r = sh('install.sh', ['--root', root, '--collector']);
    expect(r.stderr + r.stdout).toMatch(/installed edge-sensor/);
    expect(r.status).toBe(0);
    const u = unitFile(at('etc/systemd/system/edge-sensor-collector.service'));
    const [node, main, cmd, flag, config] = one(u, 'ExecStart').split(/\s+/);
    accessSync(node, constants.X_OK);
    expect([main, cmd, flag]).toEqual(['/opt/edge-sensor/dist/cli/main.js', 'collect', '--config']);
    expect(lstatSync(at(config)).mode & 0o777).toBe(0o600);
    const check = spawnSync(node, [at(main), 'check-config', '--config', at(config)], { encoding: 'utf8' });
    expect(check.stdout).toMatch(/ok \(collector/);
    expect(readFileSync(at('usr/local/bin/edge-sensor'), 'utf8')).toContain('EDGE_SENSOR_COLLECTOR_CONFIG:-/etc/edge-sensor/collector.yaml');
    // an upgrade without the flag keeps the collector installed, its config untouched
    appendFileSync(at(config), '# edited by the operator\n');
    expect(sh('install.sh', ['--root', root]).status).toBe(0);
    expect(existsSync(at('etc/systemd/system/edge-sensor-collector.service'))).toBe(true);
    expect(readFileSync(at(config), 'utf8')).toContain('# edited by the operator');
    if (hasSystemctl) expect(lstatSync(at('etc/systemd/system/multi-user.target.wants/edge-sensor-collector.service')).isSymbolicLink()).toBe(true);
  });

  it('changes nothing with --dry-run', () => {
    const dry = join(tmp.dir, 'dry');
    const r = sh('install.sh', ['--root', dry, '--dry-run']);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^\+ install -m 0644 .* \S+\/etc\/systemd\/system\/edge-sensor.service$/m);
    expect(readdirSync(dry)).toEqual([]);
  });

  it('uninstalls the program but keeps config and data; --purge removes them', () => {
    writeFileSync(at('var/lib/edge-sensor/edge-sensor.db'), 'readings');
    let r = sh('uninstall.sh', ['--root', root]);
    expect(r.status).toBe(0);
    for (const gone of ['opt/edge-sensor', 'etc/systemd/system/edge-sensor.service', 'etc/systemd/system/edge-sensor-collector.service', 'usr/local/bin/edge-sensor', 'etc/systemd/system/multi-user.target.wants/edge-sensor.service']) {
      expect(existsSync(at(gone)), gone).toBe(false);
    }
    expect(existsSync(at('etc/edge-sensor/config.yaml'))).toBe(true);
    expect(readFileSync(at('var/lib/edge-sensor/edge-sensor.db'), 'utf8')).toBe('readings');
    r = sh('uninstall.sh', ['--root', root, '--purge']);
    expect(r.status).toBe(0);
    expect(existsSync(at('etc/edge-sensor'))).toBe(false);
    expect(existsSync(at('var/lib/edge-sensor'))).toBe(false);
  });
});

describe('scripts/install.sh with hostile or awkward paths', () => {
  it('never runs a package folder name as code, not even with --dry-run', () => {
    // an unpacked package in a folder whose name is JavaScript that the old installer pasted into `node -p`
    const evil = join(tmp.dir, `x'+require("child_process").execSync("touch PWNED")+'`);
    mkdirSync(join(evil, 'scripts'), { recursive: true });
    for (const f of ['package.json', 'scripts/install.sh']) copyFileSync(join(PROJECT, f), join(evil, f));
    symlinkSync(join(PROJECT, 'dist'), join(evil, 'dist'));
    symlinkSync(join(PROJECT, 'systemd'), join(evil, 'systemd'));
    symlinkSync(join(PROJECT, 'config'), join(evil, 'config'));
    const r = spawnSync('bash', [join(evil, 'scripts/install.sh'), '--root', join(tmp.dir, 'evil-root'), '--dry-run'], { cwd: tmp.dir, encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout + r.stderr).toContain(`staging edge-sensor ${JSON.parse(readFileSync(join(PROJECT, 'package.json'), 'utf8')).version}`);
    expect(r.status).toBe(0);
    expect(existsSync(join(tmp.dir, 'PWNED'))).toBe(false);
    expect(existsSync(join(PROJECT, 'PWNED'))).toBe(false);
  });

  it('quotes a node path with a space and an ampersand for systemd and for sh', () => {
    const dir = join(tmp.dir, 'my node & co');
    mkdirSync(dir);
    const node = join(dir, 'node');
    symlinkSync(process.execPath, node);
    const root = join(tmp.dir, 'awkward-root');
    const r = sh('install.sh', ['--root', root, '--node', node, '--no-start']);
    expect(r.stderr + r.stdout).toMatch(/installed edge-sensor/);
    expect(r.status).toBe(0);
    const unit = join(root, 'etc/systemd/system/edge-sensor.service');
    expect(one(unitFile(unit), 'ExecStart')).toMatch(new RegExp(`^"${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/node" --`));
    if (hasAnalyze) {
      const verify = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
      expect((verify.stdout + verify.stderr).split('\n').filter((l) => l && !/dist\/cli\/main\.js|No such file/.test(l))).toEqual([]);
    }
    // the wrapper, pointed at the installed copy (and its non-root branch: no service user here), runs that node
    const wrapper = readFileSync(join(root, 'usr/local/bin/edge-sensor'), 'utf8')
      .replaceAll('/opt/edge-sensor', join(root, 'opt/edge-sensor'))
      .replace('[ "$(id -u)" = 0 ]', '[ "$(id -u)" = nobody ]');
    writeFileSync(join(tmp.dir, 'wrapper.sh'), wrapper);
    const v = spawnSync('sh', [join(tmp.dir, 'wrapper.sh'), '--version'], { encoding: 'utf8' });
    expect(v.stderr).toBe('');
    expect(v.stdout.trim()).toBe(JSON.parse(readFileSync(join(PROJECT, 'package.json'), 'utf8')).version);
  });
});
