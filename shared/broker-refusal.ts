// Why a broker connection failed, in words a person can act on: the TLS and MQTT errors mqtt.js
// passes on are codes (SELF_SIGNED_CERT_IN_CHAIN, CONNACK 4) or OpenSSL alerts. The agent and
// the controller share it; each names its own settings in the advice.

/** Where each side sets what a reason points at (config keys for the agent, flags for the controller). */
export interface RefusalSettings {
  /** Who "this" is: "node" or "controller". */
  self: string;
  ca: string;
  clientCert: string;
  credentials: string;
  url: string;
}

const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
]);

export function brokerRefusal(err: Error & { code?: string | number }, url: string, s: RefusalSettings): string {
  const code = err.code;
  const msg = err.message ?? '';
  if (typeof code === 'string' && UNTRUSTED.has(code)) return `the broker's certificate is not signed by a CA this ${s.self} trusts (${s.ca})`;
  if (code === 'CERT_HAS_EXPIRED') return `the broker's certificate has expired (or this ${s.self}'s clock is wrong)`;
  if (code === 'CERT_NOT_YET_VALID') return `the broker's certificate is not valid yet (is this ${s.self}'s clock right?)`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `the broker's certificate does not name the host in ${s.url} (${url})`;
  if (/certificate required|handshake failure|alert bad certificate|unknown ca/i.test(msg)) {
    return `the broker refused the TLS handshake: it wants a client certificate its CA signed (${s.clientCert})`;
  }
  if (code === 4 || /bad user ?name or password/i.test(msg)) return `the broker refused the username or password (${s.credentials})`;
  // mosquitto answers a wrong password with 5 in MQTT 3.1.1.
  if (code === 5 || /not authori[sz]ed/i.test(msg)) return `the broker refused this client: a wrong username or password, or not authorized (${s.credentials})`;
  if (code === 'ECONNREFUSED') return `nothing accepts connections at ${url}`;
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `the broker's host name in ${url} does not resolve`;
  if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(msg)) return `TLS does not match the broker's listener (mqtts:// to a plain port, or mqtt:// to a TLS one?)`;
  return msg || String(code);
}
