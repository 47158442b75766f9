import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, parseConfig } from '../src/config/load.js';
import { resolveSecrets } from '../src/config/secrets.js';
import { describeConnectError } from '../src/mqtt/connect-errors.js';
import { makeCerts, type TestCerts } from './helpers/certs.js';
import { makeTmp, writeConfig } from './helpers/tmp.js';
import { spawnCli, waitFor } from './helpers/process.js';

const tmp = makeTmp('es-sec-');
let certs: TestCerts;
beforeAll(() => {
  certs = makeCerts(join(tmp.dir, 'pki'));
});
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

function secretProblems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected a ConfigError');
}

describe('mqtt credentials and TLS in the config', () => {
  it('defaults: no credentials, verification on, topic alias on', () => {
    const m = parseConfig({}).mqtt;
    expect(m).toMatchObject({ topicAlias: true, tls: { insecureSkipVerify: false } });
    expect(m.username).toBeUndefined();
  });

  it('refuses settings that cannot work together, every one at once', () => {
    expect(
      problems({ mqtt: { url: 'mqtt://h:1883', protocolVersion: 4, passwordFile: '/a', passwordEnv: 'B', tls: { certFile: '/c' } } }),
    ).toEqual([
      'mqtt.tls: mqtt.tls is set but mqtt.url does not use TLS: expected an mqtts:// (or wss://) URL',
      'mqtt.tls.keyFile: expected both certFile and keyFile (a client certificate needs its key)',
      'mqtt.passwordEnv: expected either mqtt.passwordFile or mqtt.passwordEnv, not both',
      'mqtt.username: expected a user name: MQTT 3.1.1 sends a password only with a user name',
    ]);
    expect(problems({ mqtt: { passwordEnv: 'not a name' } })[0]).toMatch(/^mqtt\.passwordEnv: expected the name of an environment variable/);
  });

  it('never echoes a password given in the file or the URL', () => {
    const p = problems({ mqtt: { url: 'mqtts://u:hunter2@h', password: 'hunter2' } });
    expect(p).toHaveLength(2);
    expect(p.join('\n')).not.toContain('hunter2');
    expect(problems({ mqtt: { url: 'ftp://u:hunter2@h' } })[0]).toBe('mqtt.url: expected a URL like mqtt://host:1883 or mqtts://host:8883, got "ftp://***@h"');
  });
});

describe('resolveSecrets', () => {
  const cfg = (mqtt: Record<string, unknown>) => parseConfig({ mqtt });

  it('reads the password from a file (without its final newline) or from the environment', () => {
    const f = join(tmp.dir, 'pw');
    writeFileSync(f, 'pässword with spaces \n', { mode: 0o600 });
    expect(resolveSecrets(cfg({ username: 'u', passwordFile: f }), f).link).toEqual({ username: 'u', password: 'pässword with spaces ' });
    expect(resolveSecrets(cfg({ username: 'u', passwordEnv: 'PW' }), f, { PW: 'from-env' }).link.password).toBe('from-env');
    expect(secretProblems(() => resolveSecrets(cfg({ username: 'u', passwordEnv: 'PW' }), f, {}))).toEqual([
      'mqtt.passwordEnv: expected the environment variable PW to hold the password; it is not set',
    ]);
    writeFileSync(f, '\n');
    expect(secretProblems(() => resolveSecrets(cfg({ username: 'u', passwordFile: f }), f))[0]).toMatch(/^mqtt\.passwordFile: expected a password in .*, the file is empty/);
  });

  it('TLS material only for a TLS URL; verification on unless insecureSkipVerify', () => {
    const cfgFile = join(tmp.dir, 'c.yaml');
    writeFileSync(cfgFile, '', { mode: 0o600 });
    expect(resolveSecrets(cfg({ url: 'mqtt://h' }), cfgFile).link.tls).toBeUndefined();
    expect(resolveSecrets(cfg({ url: 'mqtts://h' }), cfgFile).link.tls).toEqual({ rejectUnauthorized: true });
    const r = resolveSecrets(cfg({ url: 'mqtts://h', tls: { caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey, serverName: 'b.test' } }), cfgFile);
    expect(r.link.tls).toMatchObject({ rejectUnauthorized: true, servername: 'b.test', ca: expect.any(Buffer), cert: expect.any(Buffer), key: expect.any(Buffer) });
    // the client certificate expires in 3 days: worth a warning; the key file is 0600 (openssl's default)
    expect(r.warnings.map((w) => w.msg)).toEqual(['the client certificate expires soon']);
    const insecure = resolveSecrets(cfg({ url: 'mqtts://h', tls: { insecureSkipVerify: true } }), cfgFile);
    expect(insecure.link.tls).toEqual({ rejectUnauthorized: false });
    expect(insecure.warnings[0].msg).toMatch(/verification is OFF/);
  });

  it('names the file that is unusable: not PEM, or a key of another certificate', () => {
    const junk = join(tmp.dir, 'junk.pem');
    writeFileSync(junk, 'not a certificate\n');
    const p = secretProblems(() => resolveSecrets(cfg({ url: 'mqtts://h', tls: { caFile: junk, certFile: certs.clientCert, keyFile: certs.otherClientKey } }), junk));
    expect(p).toHaveLength(2);
    expect(p[0]).toMatch(/^mqtt\.tls\.caFile: expected PEM certificates in .*junk\.pem/);
    expect(p[1]).toMatch(/^mqtt\.tls\.keyFile: the key in .*other-client\.key does not belong to the certificate in .*client\.crt/);
  });
});

describe('connection errors an operator can act on', () => {
  it('CONNACK refusals name the cause and the code, in each protocol version', () => {
    expect(describeConnectError(Object.assign(new Error('Connection refused: Bad User Name or Password'), { code: 134 }), 5)).toBe(
      'broker refused the connection: bad user name or password (check mqtt.username and the password) (CONNACK reason code 0x86)',
    );
    expect(describeConnectError(Object.assign(new Error('Connection refused: Bad username or password'), { code: 4 }), 4)).toMatch(/bad user name or password .*\(CONNACK return code 4\)$/);
  });

  it("OpenSSL's alerts become one readable line with the code", () => {
    const e = Object.assign(new Error('80:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 42\n'), { code: 'ERR_SSL_SOMETHING_NEW' });
    expect(describeConnectError(e, 5)).toBe('TLS: sslv3 alert bad certificate [ERR_SSL_SOMETHING_NEW]');
    expect(describeConnectError(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }), 5)).toBe('ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:1');
  });
});

describe('a password from the environment', () => {
  it('is taken out of the environment once read: programs the daemon starts do not inherit it', async () => {
    // a stand-in systemd-notify that writes down the environment it was given
    const bin = join(tmp.dir, 'bin');
    mkdirSync(bin, { recursive: true });
    const dump = join(tmp.dir, 'notify-env.txt');
    writeFileSync(join(bin, 'systemd-notify'), `#!/bin/sh\nenv > ${dump}\n`);
    chmodSync(join(bin, 'systemd-notify'), 0o755);
    const file = writeConfig(tmp.dir, {
      device: { id: 'pwenv' },
      database: { path: join(tmp.dir, 'pwenv.db') },
      mqtt: { url: 'mqtt://127.0.0.1:1', username: 'dev', passwordEnv: 'EDGE_TEST_PW' },
      sensors: [],
    }, 'pwenv.yaml');
    chmodSync(file, 0o600);
    const d = spawnCli(['run', '--config', file], { EDGE_TEST_PW: 'hunter2-secret', NOTIFY_SOCKET: join(tmp.dir, 'none.sock'), PATH: `${bin}:${process.env.PATH}` });
    await waitFor(() => existsSync(dump) && readFileSync(dump, 'utf8').includes('NOTIFY_SOCKET'), 10_000, 'systemd-notify started');
    d.child.kill('SIGTERM');
    expect((await d.exited).code).toBe(0);
    const env = readFileSync(dump, 'utf8');
    expect(env).not.toMatch(/EDGE_TEST_PW|hunter2-secret/);
    expect(d.stdout() + d.stderr()).not.toMatch(/hunter2-secret/);
  });
});
