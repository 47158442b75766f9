import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import type { TestCerts } from './helpers/certs.js';
import { startSecureMosquitto, type SecureMosquitto } from './helpers/secure-mosquitto.js';
import { Ledger } from './helpers/subscriber.js';
import { makeTmp, writeConfig } from './helpers/tmp.js';
import { runCli, spawnCli, waitFor, type Spawned } from './helpers/process.js';

// A private Mosquitto with TLS listeners that require a client certificate, a password file and
// an ACL; certificates made here with the openssl CLI. Every daemon is the built CLI in a child
// process, so its whole stdout and stderr can be searched for the password.

const tmp = makeTmp('es-tls-');
const WRONG_PW = `wrong-${randomBytes(9).toString('base64url')}`;
let broker: SecureMosquitto;
let certs: TestCerts;
let DEV_PW: string;
let port: SecureMosquitto['ports'];
let ledger: Ledger;
const daemons: Spawned[] = [];

beforeAll(async () => {
  broker = await startSecureMosquitto(tmp.dir, 'tls');
  ({ certs, ports: port } = broker);
  DEV_PW = broker.passwords.dev;
  // the reader comes in through the plain listener: what it sees is what the broker accepted
  ledger = await Ledger.start(broker.mosq.url, 'tls/+/readings', { username: 'reader', password: broker.passwords.reader });
});

afterAll(async () => {
  for (const d of daemons) if (d.child.exitCode === null) d.child.kill('SIGKILL');
  await ledger?.stop();
  await broker?.mosq.stop();
  tmp.cleanup();
});

/** A daemon config whose files are owner-only unless told otherwise. */
function setup(name: string, mqtt: Record<string, unknown>, opts: { shared?: boolean } = {}) {
  const db = join(tmp.dir, `${name}.db`);
  const path = writeConfig(
    tmp.dir,
    {
      device: { id: name },
      database: { path: db },
      mqtt: { topicPrefix: 'tls', connectTimeoutMs: 3000, ...mqtt },
      sync: { batchSize: 100, maxInFlight: 4, intervalMs: 100, publishTimeoutMs: 3000, shutdownTimeoutMs: 1500, retry: { initialDelayMs: 100, maxDelayMs: 400, maxAttempts: 5 } },
      sensors: [{ type: 'simulated', name: 'sim', unit: 'C', schedule: '* * * * * *', count: 50 }],
      log: { level: 'info' },
    },
    `${name}.yaml`,
  );
  if (!opts.shared) chmodSync(path, 0o600);
  return { db, path };
}

function passwordFile(name: string, pw: string): string {
  const f = join(tmp.dir, `${name}.pw`);
  writeFileSync(f, pw + '\n', { mode: 0o600 });
  return f;
}

const clientCert = () => ({ caFile: certs.ca, certFile: certs.clientCert, keyFile: certs.clientKey });

/** Starts the daemon at debug level: the more it logs, the more places a password could leak. */
function start(configPath: string, env: NodeJS.ProcessEnv = {}): Spawned {
  const d = spawnCli(['run', '--config', configPath], { LOG_LEVEL: 'debug', ...env });
  daemons.push(d);
  return d;
}

async function stop(d: Spawned): Promise<number | null> {
  d.child.kill('SIGTERM');
  return (await d.exited).code;
}

function query<T>(db: string, sql: string): T {
  const d = new Database(db, { readonly: true, fileMustExist: true });
  try {
    return d.prepare(sql).pluck().get() as T;
  } finally {
    d.close();
  }
}

function daemonState(db: string): { link: string; lastError?: string } | undefined {
  try {
    const v = query<string | undefined>(db, "SELECT value FROM config WHERE key = 'daemon_state'");
    return v ? JSON.parse(v) : undefined;
  } catch {
    return undefined; // not created yet, or busy
  }
}

function expectNoSecrets(d: Spawned, ...secrets: string[]): void {
  const all = d.stdout() + d.stderr();
  expect(all.length).toBeGreaterThan(0);
  for (const s of secrets) expect(all.includes(s), `a secret appears in the daemon's output`).toBe(false);
}

describe('TLS with a client certificate and a password', () => {
  it('right certificate and password: rows synced and seen by a subscriber; no secret in any log line', async () => {
    const c = setup('good', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('good', DEV_PW), tls: clientCert() });
    const d = start(c.path);
    await waitFor(() => query<number>(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1') >= 150, 15_000, 'rows synced over TLS');
    expect(await stop(d)).toBe(0);
    const synced = new Database(c.db, { readonly: true }).prepare('SELECT id FROM transactions WHERE synced = 1').pluck().all() as string[];
    await waitFor(() => synced.every((id) => ledger.has(id)), 5000, 'every synced id at the subscriber');
    const connected = d.logLines().find((l) => l.msg === 'connected to broker');
    expect(connected).toMatchObject({ url: `mqtts://127.0.0.1:${port.tls}` });
    // owner-only files: no permission warning
    expect(d.logLines().filter((l) => /accessible to other users/.test(String(l.msg)))).toEqual([]);
    expect(statSync(c.db).mode & 0o777).toBe(0o600);
    expectNoSecrets(d, DEV_PW);
  });

  it('serverName: a certificate for another name is accepted under that name, refused without it', async () => {
    const ok = setup('named', { url: `mqtts://127.0.0.1:${port.named}`, username: 'dev', passwordFile: passwordFile('named', DEV_PW), tls: { ...clientCert(), serverName: 'broker.test' } });
    const bad = setup('unnamed', { url: `mqtts://127.0.0.1:${port.named}`, username: 'dev', passwordFile: passwordFile('unnamed', DEV_PW), tls: clientCert() });
    const [d1, d2] = [start(ok.path), start(bad.path)];
    await waitFor(() => query<number>(ok.db, 'SELECT count(*) FROM transactions WHERE synced = 1') > 0, 15_000, 'synced under serverName');
    await waitFor(() => daemonState(bad.db)?.lastError, 15_000, 'lastError without serverName');
    expect(daemonState(bad.db)!.lastError).toMatch(/^TLS: the broker's certificate is for another host name.*\[ERR_TLS_CERT_ALTNAME_INVALID\].*127\.0\.0\.1/);
    expect(await stop(d1)).toBe(0);
    expect(await stop(d2)).toBe(0);
  });

  // Each refusal: a clear cause in the daemon's state and log, sampling goes on, attempts go on.
  const refusals: Array<{ name: string; mqtt: () => Record<string, unknown>; error: RegExp; env?: () => NodeJS.ProcessEnv }> = [
    {
      name: 'wrong CA',
      mqtt: () => ({ url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('wrong-ca', DEV_PW), tls: { ...clientCert(), caFile: certs.otherCa } }),
      error: /^TLS: the broker's certificate is not signed by a CA we trust \(set mqtt\.tls\.caFile.*\[SELF_SIGNED_CERT_IN_CHAIN\]/,
    },
    {
      name: 'missing client cert',
      mqtt: () => ({ url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('no-cert', DEV_PW), tls: { caFile: certs.ca } }),
      error: /^TLS: the broker requires a client certificate \(set mqtt\.tls\.certFile and mqtt\.tls\.keyFile\)/,
    },
    {
      name: 'client cert of another CA',
      mqtt: () => ({ url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('other-cert', DEV_PW), tls: { caFile: certs.ca, certFile: certs.otherClientCert, keyFile: certs.otherClientKey } }),
      error: /^TLS: the broker does not trust our client certificate/,
    },
    {
      name: 'expired server certificate',
      mqtt: () => ({ url: `mqtts://127.0.0.1:${port.expired}`, username: 'dev', passwordFile: passwordFile('expired', DEV_PW), tls: clientCert() }),
      error: /^TLS: the broker's certificate has expired.*\[CERT_HAS_EXPIRED\]/,
    },
    {
      name: 'wrong password (from the environment), MQTT 5',
      mqtt: () => ({ url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordEnv: 'TEST_MQTT_PW', tls: clientCert() }),
      env: () => ({ TEST_MQTT_PW: WRONG_PW }),
      // Mosquitto 2.0 answers a wrong password with "not authorized" rather than 0x86
      error: /^broker refused the connection: not authorized .*\(CONNACK reason code 0x87\)$/,
    },
    {
      name: 'wrong password, MQTT 3.1.1',
      mqtt: () => ({ url: `mqtts://127.0.0.1:${port.tls}`, protocolVersion: 4, username: 'dev', passwordFile: passwordFile('wrong-v4', WRONG_PW), tls: clientCert() }),
      error: /^broker refused the connection: not authorized .*\(CONNACK return code 5\)$/,
    },
  ];

  it.concurrent.each(refusals)('$name: refused with a clear error in log and state; keeps sampling and retrying', async ({ name, mqtt, error, env }) => {
    const c = setup(name.replace(/\W+/g, '-'), mqtt());
    const d = start(c.path, env?.());
    await waitFor(() => daemonState(c.db)?.lastError, 15_000, `lastError of ${name}`);
    // it keeps buffering and trying: readings pile up, attempts go on
    await waitFor(() => d.logLines().filter((l) => l.msg === 'connect attempt failed').length >= 2, 15_000, 'a second attempt');
    await waitFor(() => query<number>(c.db, 'SELECT count(*) FROM transactions') >= 100, 15_000, 'readings buffered');
    const state = daemonState(c.db)!;
    expect(state.link).toBe('unreachable');
    expect(state.lastError).toMatch(error);
    const warned = d.logLines().find((l) => l.msg === 'cannot reach broker; readings stay buffered, retrying with backoff');
    expect(String(warned?.error)).toMatch(error);
    expect(query<number>(c.db, 'SELECT count(*) FROM transactions WHERE synced = 1')).toBe(0);
    expect(await stop(d)).toBe(0);
    expectNoSecrets(d, DEV_PW, WRONG_PW);
  });

  it('insecureSkipVerify connects to a broker it cannot verify, and warns at every start', async () => {
    const c = setup('insecure', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('insecure', DEV_PW), tls: { ...clientCert(), caFile: certs.otherCa, insecureSkipVerify: true } });
    for (let run = 0; run < 2; run++) {
      const d = start(c.path);
      await waitFor(() => d.logLines().some((l) => l.msg === 'connected to broker'), 15_000, 'connected without verification');
      expect(await stop(d)).toBe(0);
      const warning = d.logLines().find((l) => /verification is OFF/.test(String(l.msg)));
      expect(warning).toMatchObject({ level: 40, key: 'mqtt.tls.insecureSkipVerify' });
    }
  });

  it('warns when the config file or the password file is readable by other users', async () => {
    const pw = join(tmp.dir, 'shared.pw');
    writeFileSync(pw, DEV_PW, { mode: 0o644 });
    chmodSync(pw, 0o644);
    const c = setup('shared', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: pw, tls: clientCert() }, { shared: true });
    chmodSync(c.path, 0o640);
    const d = start(c.path);
    await waitFor(() => d.logLines().some((l) => l.msg === 'connected to broker'), 15_000, 'connected');
    expect(await stop(d)).toBe(0);
    const warnings = d.logLines().filter((l) => /accessible to other users/.test(String(l.msg)));
    expect(warnings.map((w) => [w.key, w.mode])).toEqual(
      expect.arrayContaining([
        ['mqtt.passwordFile', '0644'],
        ['config', '0640'],
      ]),
    );
    expectNoSecrets(d, DEV_PW);
  });

  it('watch uses the same credentials and TLS files, and says clearly why it cannot connect', async () => {
    const ok = setup('watch-ok', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('watch-ok', DEV_PW), tls: clientCert() });
    const bad = setup('watch-bad', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('watch-bad', DEV_PW), tls: { caFile: certs.ca } });
    const [w1, w2] = [spawnCli(['watch', '--config', ok.path]), spawnCli(['watch', '--config', bad.path])];
    daemons.push(w1, w2);
    await waitFor(() => /watching tls\/\+\/readings.* on mqtts:\/\/127\.0\.0\.1/.test(w1.stderr()), 10_000, 'watch connected over TLS');
    await waitFor(() => /watch: TLS: the broker requires a client certificate/.test(w2.stderr()), 10_000, 'watch refused');
    for (const w of [w1, w2]) {
      w.child.kill('SIGTERM');
      await w.exited;
      expectNoSecrets(w, DEV_PW);
    }
  });

  it('check-config validates the secret files and prints no secret', async () => {
    const c = setup('check', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: passwordFile('check', DEV_PW), tls: clientCert() });
    const ok = await runCli(['check-config', '--config', c.path, '--print'], { TEST_MQTT_PW: DEV_PW });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout.slice(0, ok.stdout.lastIndexOf('}') + 1)).mqtt).toMatchObject({ username: 'dev', passwordFile: expect.any(String) });
    expect(ok.stdout + ok.stderr).not.toContain(DEV_PW);

    const missing = setup('check-missing', { url: `mqtts://127.0.0.1:${port.tls}`, username: 'dev', passwordFile: join(tmp.dir, 'nope.pw'), tls: { ...clientCert(), keyFile: certs.otherClientKey } });
    const bad = await runCli(['check-config', '--config', missing.path]);
    expect(bad.code).toBe(78);
    expect(bad.stderr).toMatch(/mqtt\.passwordFile: cannot read .*nope\.pw \(file not found\)/);
    expect(bad.stderr).toMatch(/mqtt\.tls\.keyFile: the key in .* does not belong to the certificate/);

    // a password in the config file or in the URL is refused without being echoed
    const inline = writeConfig(tmp.dir, { mqtt: { url: `mqtt://dev:${DEV_PW}@127.0.0.1:1883`, password: DEV_PW } }, 'inline.yaml');
    const refused = await runCli(['check-config', '--config', inline, '--print']);
    expect(refused.code).toBe(78);
    expect(refused.stderr).toMatch(/mqtt\.url: expected no user name or password in the URL/);
    expect(refused.stderr).toMatch(/mqtt\.password: a password is never read from the config file/);
    expect(refused.stdout + refused.stderr).not.toContain(DEV_PW);
  });
});
