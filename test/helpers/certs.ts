import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Paths of the PEM files made by makeCerts. */
export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** an unrelated CA, and a client certificate it signed */
  otherCa: string;
  otherClientCert: string;
  otherClientKey: string;
  /** a server certificate of the right CA whose validity ended in 2020 */
  expiredServerCert: string;
  /** a server certificate (and key) of the right CA for the name broker.test only */
  namedServerCert: string;
  namedServerKey: string;
}

const openssl = (cwd: string, args: string[]) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });

// EC P-256 keys: generated in milliseconds, where RSA 2048 takes a noticeable fraction of a second each
const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

function makeCa(dir: string, name: string): void {
  openssl(dir, [
    'req', '-x509', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '3', '-subj', `/CN=edge-sensor test ${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ]);
}

function makeLeaf(dir: string, ca: string, name: string, cn: string, ext: string): void {
  writeFileSync(join(dir, `${name}.ext`), ext + '\n');
  openssl(dir, ['req', ...newKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`]);
  openssl(dir, ['x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '3', '-extfile', `${name}.ext`]);
}

/**
 * A throw-away PKI made with the openssl CLI: a CA, a server certificate for 127.0.0.1 and
 * localhost, a client certificate, an unrelated second CA with its own client certificate, an
 * expired server certificate and one for another host name.
 */
export function makeCerts(dir: string): TestCerts {
  mkdirSync(dir, { recursive: true });
  makeCa(dir, 'ca');
  makeCa(dir, 'other-ca');
  const serverExt = 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth';
  makeLeaf(dir, 'ca', 'server', 'localhost', serverExt);
  makeLeaf(dir, 'ca', 'named', 'broker.test', 'subjectAltName=DNS:broker.test\nextendedKeyUsage=serverAuth');
  makeLeaf(dir, 'ca', 'client', 'edge-sensor-device', 'extendedKeyUsage=clientAuth');
  makeLeaf(dir, 'other-ca', 'other-client', 'edge-sensor-device', 'extendedKeyUsage=clientAuth');

  // `openssl x509 -req` cannot back-date a certificate; `openssl ca` can, given its small database
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(
    join(dir, 'ca.cnf'),
    ['[ca]', 'default_ca = d', '[d]', 'database = index.txt', 'new_certs_dir = .', 'serial = serial', 'default_md = sha256', 'policy = p', '[p]', 'commonName = supplied'].join('\n') + '\n',
  );
  openssl(dir, [
    'ca', '-batch', '-notext', '-config', 'ca.cnf', '-cert', 'ca.crt', '-keyfile', 'ca.key', '-in', 'server.csr', '-out', 'expired.crt',
    '-startdate', '20200101000000Z', '-enddate', '20200102000000Z', '-extfile', 'server.ext',
  ]);

  const p = (f: string) => join(dir, f);
  return {
    dir,
    ca: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    otherCa: p('other-ca.crt'),
    otherClientCert: p('other-client.crt'),
    otherClientKey: p('other-client.key'),
    expiredServerCert: p('expired.crt'),
    namedServerCert: p('named.crt'),
    namedServerKey: p('named.key'),
  };
}
