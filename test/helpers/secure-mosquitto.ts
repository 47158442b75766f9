import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeCerts, type TestCerts } from './certs.js';
import { freePort, Mosquitto } from './mosquitto.js';

export interface SecureMosquitto {
  mosq: Mosquitto;
  certs: TestCerts;
  /** TLS listeners, all requiring a client certificate of the test CA */
  ports: { tls: number; expired: number; named: number };
  /** user `dev` may publish under the topic root, user `reader` may subscribe to it */
  passwords: { dev: string; reader: string };
  version: string;
}

/**
 * A private Mosquitto as a careful operator runs it: no anonymous access, a password file
 * (mosquitto_passwd), an ACL, and TLS listeners that require a client certificate: one with a
 * good server certificate, one with an expired one, one with a certificate for broker.test only.
 * The plain listener (mosq.url) takes the same passwords: subscribers come in through it.
 */
export async function startSecureMosquitto(dir: string, topicRoot: string, extra: string[] = []): Promise<SecureMosquitto> {
  const certs = makeCerts(join(dir, 'pki'));
  const passwords = { dev: `dev-${randomBytes(9).toString('base64url')}`, reader: `reader-${randomBytes(9).toString('base64url')}` };
  const passwd = join(dir, 'passwd');
  writeFileSync(passwd, '');
  for (const [user, pw] of Object.entries(passwords)) execFileSync('mosquitto_passwd', ['-b', passwd, user, pw]);
  const acl = join(dir, 'acl');
  writeFileSync(acl, ['user dev', `topic write ${topicRoot}/#`, '', 'user reader', `topic read ${topicRoot}/#`, ''].join('\n'));
  const ports = { tls: await freePort(), expired: await freePort(), named: await freePort() };
  const listener = (p: number, cert: string, key: string) => [`listener ${p} 127.0.0.1`, `cafile ${certs.ca}`, `certfile ${cert}`, `keyfile ${key}`, 'require_certificate true'];
  const mosq = await Mosquitto.start(join(dir, 'mosq'), [
    // after the helper's allow_anonymous true: the last setting wins
    'allow_anonymous false',
    `password_file ${passwd}`,
    `acl_file ${acl}`,
    ...listener(ports.tls, certs.serverCert, certs.serverKey),
    ...listener(ports.expired, certs.expiredServerCert, certs.serverKey),
    ...listener(ports.named, certs.namedServerCert, certs.namedServerKey),
    ...extra,
  ]);
  return { mosq, certs, ports, passwords, version: mosquittoVersion() };
}

/** "2.0.11", from the broker's own help text. */
export function mosquittoVersion(): string {
  let out = '';
  try {
    out = execFileSync('mosquitto', ['-h'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? ''); // -h exits non-zero on some versions
  }
  return /mosquitto version (\S+)/.exec(out)?.[1] ?? 'unknown';
}
