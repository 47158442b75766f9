/**
 * Turns what Node, OpenSSL and mqtt.js report about a failed connection into one line an operator
 * can act on. OpenSSL's own text ("805C…:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert
 * certificate required:../deps/openssl/…") names neither the cause nor the setting to change.
 */

const UNTRUSTED = "the broker's certificate is not signed by a CA we trust (set mqtt.tls.caFile to the CA that signed it)";

const TLS_CAUSES: Record<string, string> = {
  CERT_HAS_EXPIRED: "the broker's certificate has expired (or this device's clock is wrong)",
  CERT_NOT_YET_VALID: "the broker's certificate is not valid yet: is this device's clock right?",
  SELF_SIGNED_CERT_IN_CHAIN: UNTRUSTED,
  DEPTH_ZERO_SELF_SIGNED_CERT: UNTRUSTED,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: UNTRUSTED,
  UNABLE_TO_GET_ISSUER_CERT: UNTRUSTED,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: UNTRUSTED,
  CERT_SIGNATURE_FAILURE: "the broker's certificate has a bad signature",
  CERT_REVOKED: "the broker's certificate is revoked",
  ERR_TLS_CERT_ALTNAME_INVALID: "the broker's certificate is for another host name (check the host of mqtt.url, or set mqtt.tls.serverName)",
  ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED: 'the broker requires a client certificate (set mqtt.tls.certFile and mqtt.tls.keyFile)',
  ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE: 'the broker refused the TLS handshake (a client certificate missing, or no common cipher or version)',
  ERR_SSL_TLSV1_ALERT_UNKNOWN_CA: 'the broker does not trust our client certificate (signed by a CA it does not know)',
  ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE: 'the broker refused our client certificate',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_EXPIRED: 'the broker refused our client certificate: it has expired',
  ERR_SSL_SSLV3_ALERT_CERTIFICATE_REVOKED: 'the broker refused our client certificate: it is revoked',
  ERR_SSL_WRONG_VERSION_NUMBER: 'the port does not speak TLS (use mqtt:// or the broker\'s TLS port)',
  ERR_SSL_PACKET_LENGTH_TOO_LONG: 'the port does not speak TLS (use mqtt:// or the broker\'s TLS port)',
};

// MQTT 5 CONNACK reason codes, and the 3.1.1 return codes (1-5) where they differ.
const CONNACK_V5: Record<number, string> = {
  0x80: 'unspecified error',
  0x81: 'malformed packet',
  0x82: 'protocol error',
  0x84: 'unsupported protocol version (try mqtt.protocolVersion: 4)',
  0x85: 'client identifier not valid (check mqtt.clientId)',
  0x86: 'bad user name or password (check mqtt.username and the password)',
  0x87: 'not authorized (check mqtt.username, the password, the client certificate and the broker\'s ACL)',
  0x88: 'server unavailable',
  0x89: 'server busy',
  0x8a: 'banned',
  0x8c: 'bad authentication method',
  0x95: 'packet too large',
  0x97: 'quota exceeded',
  0x9c: 'use another server',
  0x9d: 'server moved',
  0x9f: 'connection rate exceeded',
};
const CONNACK_V4: Record<number, string> = {
  1: 'unacceptable protocol version (try mqtt.protocolVersion: 4)',
  2: 'client identifier rejected (check mqtt.clientId)',
  3: 'server unavailable',
  4: 'bad user name or password (check mqtt.username and the password)',
  5: 'not authorized (check mqtt.username, the password, the client certificate and the broker\'s ACL)',
};

/**
 * One line for an error of a connection attempt. mqtt.js reports a refusing CONNACK as an error
 * whose numeric code is the reason code; TLS and socket errors carry a string code.
 */
export function describeConnectError(err: Error & { code?: number | string }, protocolVersion: 4 | 5): string {
  const code = err.code;
  if (typeof code === 'number') {
    const cause = (protocolVersion === 5 ? CONNACK_V5 : CONNACK_V4)[code];
    const hex = protocolVersion === 5 ? `reason code 0x${code.toString(16)}` : `return code ${code}`;
    return cause ? `broker refused the connection: ${cause} (CONNACK ${hex})` : `broker refused the connection: ${err.message} (CONNACK ${hex})`;
  }
  if (code && TLS_CAUSES[code]) {
    // the host name mismatch message lists the names the certificate is for: worth keeping
    const detail = code === 'ERR_TLS_CERT_ALTNAME_INVALID' ? `: ${err.message}` : '';
    return `TLS: ${TLS_CAUSES[code]} [${code}]${detail}`;
  }
  if (code && /^ERR_SSL_|^ERR_TLS_|^ERR_OSSL_/.test(code)) {
    // OpenSSL's reason is the text between the function name and the source file
    const reason = /SSL routines:[^:]*:([^:]+)/.exec(err.message)?.[1];
    return `TLS: ${reason ?? err.message.trim()} [${code}]`;
  }
  return code ? `${code}: ${err.message}` : err.message;
}

/** A connection closed by the broker without a CONNACK: no error to show, but a likely cause. */
export function closedBeforeConnack(protocolVersion: 4 | 5): string {
  return protocolVersion === 5
    ? 'the broker closed the connection without a CONNACK (a broker that speaks only MQTT 3.1.1 does this to MQTT 5 clients: try mqtt.protocolVersion: 4)'
    : 'the broker closed the connection without a CONNACK';
}

/** An error of a working connection, with its code. */
export function describeError(err: Error & { code?: number | string }): string {
  return typeof err.code === 'number' ? `${err.message} (code ${err.code})` : err.code ? `${err.code}: ${err.message}` : err.message;
}
