import { statSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { ConfigError, type ConfigProblem } from './load.js';
import type { Config } from './schema.js';
import { FileTooLargeError, readFileCapped } from '../util/read-capped.js';
import { usesTls } from '../util/url.js';

/** What the MQTT link gets besides the config: credentials and TLS material, read at start. */
export interface LinkSecrets {
  username?: string;
  password?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; servername?: string; rejectUnauthorized: boolean };
}

/** Something the operator should fix, logged at every start; never contains a secret. */
export interface SecretsWarning {
  fields: Record<string, unknown>;
  msg: string;
}

const CERT_EXPIRY_WARNING_MS = 14 * 86_400_000;
/** a password file holds one line; a CA bundle a few hundred KB at most */
const PASSWORD_MAX_BYTES = 64 * 1024;
const PEM_MAX_BYTES = 4 * 1024 * 1024;

/**
 * Reads the password (from mqtt.passwordFile or the variable named by mqtt.passwordEnv) and the
 * TLS files the config names. Kept out of the config object on purpose: the config is printed by
 * `check-config --print` and logged in parts, secrets never are. Throws ConfigError listing every
 * file that cannot be used; returns warnings about permissions and certificates.
 */
export function resolveSecrets(config: { mqtt: MqttSecretsConfig }, configFile: string, env: NodeJS.ProcessEnv = process.env, nowMs = Date.now()): { link: LinkSecrets; warnings: SecretsWarning[] } {
  const m = config.mqtt;
  const problems: ConfigProblem[] = [];
  const warnings: SecretsWarning[] = [];
  const link: LinkSecrets = {};
  const read = (key: string, file: string, private_: boolean) => readSecretFile(key, file, private_, problems, warnings);

  if (m.username !== undefined) link.username = m.username;
  const pw = readPassword('mqtt', m, env, problems, warnings);
  if (pw !== undefined) link.password = pw;

  if (usesTls(m.url)) {
    const t = m.tls;
    const tls: NonNullable<LinkSecrets['tls']> = { rejectUnauthorized: !t.insecureSkipVerify };
    const before = problems.length;
    if (t.caFile !== undefined) tls.ca = read('mqtt.tls.caFile', t.caFile, false);
    if (t.certFile !== undefined) tls.cert = read('mqtt.tls.certFile', t.certFile, false);
    if (t.keyFile !== undefined) tls.key = read('mqtt.tls.keyFile', t.keyFile, true);
    if (t.serverName !== undefined) tls.servername = t.serverName;
    if (problems.length === before) checkTlsMaterial(tls, t, problems, warnings, nowMs);
    if (t.insecureSkipVerify) {
      warnings.push({
        fields: { key: 'mqtt.tls.insecureSkipVerify' },
        msg: "TLS certificate verification is OFF: anyone on the network path can pose as the broker and read the readings and the password; set mqtt.tls.caFile instead",
      });
    }
    link.tls = tls;
  }

  if (problems.length > 0) throw new ConfigError(configFile, problems);
  // the config itself holds no password, but it says where the secrets are and who we log in as
  if (m.username !== undefined || m.passwordFile !== undefined || m.passwordEnv !== undefined || m.tls.keyFile !== undefined) {
    warnIfShared('config', configFile, warnings);
  }
  return { link, warnings };
}

/** The keys of an MQTT section that name secrets (the daemon's and the collector's sections have them all). */
export type MqttSecretsConfig = Pick<Config['mqtt'], 'url' | 'username' | 'passwordFile' | 'passwordEnv' | 'tls'>;

function readSecretFile(key: string, file: string, private_: boolean, problems: ConfigProblem[], warnings: SecretsWarning[], maxBytes = PEM_MAX_BYTES): Buffer | undefined {
  let data: Buffer;
  try {
    data = readFileCapped(file, maxBytes);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = err instanceof FileTooLargeError ? `larger than ${maxBytes} bytes` : code === 'ENOENT' ? 'file not found' : (code ?? String(err));
    problems.push({ path: key, message: `cannot read ${file} (${why})` });
    return undefined;
  }
  if (private_) warnIfShared(key, file, warnings);
  return data;
}

/**
 * The password a config section names by `passwordFile` or `passwordEnv` (the MQTT broker's, the
 * collector's PostgreSQL), or undefined when it names none. Problems are pushed with the section's path.
 */
export function readPassword(
  section: string,
  src: { passwordFile?: string; passwordEnv?: string },
  env: NodeJS.ProcessEnv,
  problems: ConfigProblem[],
  warnings: SecretsWarning[],
): string | undefined {
  if (src.passwordFile !== undefined) {
    const data = readSecretFile(`${section}.passwordFile`, src.passwordFile, true, problems, warnings, PASSWORD_MAX_BYTES);
    // `echo secret > file` leaves a newline that is not part of the password
    const pw = data?.toString('utf8').replace(/\r?\n$/, '');
    if (pw === '') problems.push({ path: `${section}.passwordFile`, message: `expected a password in ${src.passwordFile}, the file is empty` });
    else return pw;
  } else if (src.passwordEnv !== undefined) {
    const pw = env[src.passwordEnv];
    if (!pw) problems.push({ path: `${section}.passwordEnv`, message: `expected the environment variable ${src.passwordEnv} to hold the password; it is ${pw === undefined ? 'not set' : 'empty'}` });
    else return pw;
  }
  return undefined;
}

/** Problems a TLS library would only report at the first connection, found at start instead. */
function checkTlsMaterial(tls: NonNullable<LinkSecrets['tls']>, t: MqttSecretsConfig['tls'], problems: ConfigProblem[], warnings: SecretsWarning[], nowMs: number): void {
  if (tls.ca) {
    // Node skips what is not a certificate in a CA bundle without a word: look for ourselves
    const blocks = tls.ca.toString('latin1').match(/-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g) ?? [];
    try {
      if (blocks.length === 0) throw new Error('no certificate found');
      for (const b of blocks) new X509Certificate(b);
    } catch (err) {
      problems.push({ path: 'mqtt.tls.caFile', message: `expected PEM certificates in ${t.caFile}: ${(err as Error).message}` });
    }
  }
  if (!tls.cert || !tls.key) return;
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(tls.cert);
  } catch (err) {
    problems.push({ path: 'mqtt.tls.certFile', message: `expected a PEM certificate in ${t.certFile}: ${(err as Error).message}` });
    return;
  }
  try {
    createSecureContext({ cert: tls.cert, key: tls.key });
  } catch (err) {
    const e = err as Error & { code?: string };
    const mismatch = e.code === 'ERR_OSSL_X509_KEY_VALUES_MISMATCH' || /mismatch/i.test(e.message);
    problems.push({ path: 'mqtt.tls.keyFile', message: mismatch ? `the key in ${t.keyFile} does not belong to the certificate in ${t.certFile}` : `expected an unencrypted PEM private key in ${t.keyFile}: ${e.message}` });
    return;
  }
  const validTo = Date.parse(cert.validTo);
  const fields = { file: t.certFile, validTo: new Date(validTo).toISOString() };
  if (validTo < nowMs) warnings.push({ fields, msg: 'the client certificate has expired (or the clock is wrong): the broker will refuse it' });
  else if (validTo - nowMs < CERT_EXPIRY_WARNING_MS) warnings.push({ fields, msg: 'the client certificate expires soon' });
}

/** Warns when a file with secrets (or pointing at them) is readable or writable by other users. */
export function warnIfShared(key: string, file: string, warnings: SecretsWarning[]): void {
  let mode: number;
  try {
    mode = statSync(file).mode & 0o777;
  } catch {
    return;
  }
  if (mode & 0o077) {
    const msg = key === 'config' ? 'the config file is accessible to other users: chmod 600 it' : 'a file with a secret is accessible to other users: chmod 600 it';
    warnings.push({ fields: { key, file, mode: '0' + mode.toString(8) }, msg });
  }
}
