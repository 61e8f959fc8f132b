import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { canonicalJson, NotCanonicalizable } from './canonical-json.js';

// Signed messages, controller -> node (issue 14): Ed25519 (Node's own crypto) over the RFC 8785
// form of the whole envelope plus the node it is addressed to (the topic names the node, and a
// topic is not signed). The signature sits beside the envelope's header, route and content, so
// an agent that does not check it reads the message as before.

export const SIGNATURE_CONTEXT = 'modeld-envelope-v1';

export interface EnvelopeSignature {
  alg: 'Ed25519';
  /** Which trusted key: the first 16 hex digits of the sha256 of the public key's SPKI DER. */
  keyId: string;
  /** base64 of the 64-byte signature. */
  value: string;
}

export type VerifyOutcome =
  | { ok: true; keyId: string }
  | { ok: false; reason: 'Unsigned' | 'UnknownKey' | 'BadSignature'; message: string };

export const keyIdOf = (publicKey: KeyObject): string =>
  createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);

/** What is signed: the envelope without its signature, and the node. */
function signedBytes(envelope: Record<string, unknown>, node: string): Buffer {
  const { signature: _ignored, ...rest } = envelope;
  return Buffer.from(canonicalJson({ context: SIGNATURE_CONTEXT, node, envelope: rest }));
}

export function signEnvelope<T extends Record<string, unknown>>(envelope: T, node: string, privateKey: KeyObject): T & { signature: EnvelopeSignature } {
  const publicKey = createPublicKey(privateKey);
  const value = sign(null, signedBytes(envelope, node), privateKey).toString('base64');
  return { ...envelope, signature: { alg: 'Ed25519', keyId: keyIdOf(publicKey), value } };
}

/** Checks a message as it came off the wire (parsed JSON, before any schema default is applied). */
export function verifyEnvelope(raw: unknown, node: string, trusted: ReadonlyMap<string, KeyObject>): VerifyOutcome {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { ok: false, reason: 'Unsigned', message: 'not an object' };
  const envelope = raw as Record<string, unknown>;
  const sig = envelope.signature as Partial<EnvelopeSignature> | undefined;
  if (sig === undefined) return { ok: false, reason: 'Unsigned', message: 'the message carries no signature' };
  if (typeof sig !== 'object' || sig === null || sig.alg !== 'Ed25519' || typeof sig.keyId !== 'string' || typeof sig.value !== 'string') {
    return { ok: false, reason: 'BadSignature', message: 'the signature is not {alg: "Ed25519", keyId, value}' };
  }
  const key = trusted.get(sig.keyId);
  if (!key) return { ok: false, reason: 'UnknownKey', message: `signed by key ${sig.keyId.slice(0, 16)}, which this node does not trust (trusted: ${[...trusted.keys()].join(', ') || 'none'})` };
  const value = Buffer.from(sig.value, 'base64');
  // Only the one base64 spelling of the 64 bytes: Buffer.from ignores stray bits and characters,
  // and a signature that can be respelled would make one message many.
  if (value.length !== 64 || value.toString('base64') !== sig.value) {
    return { ok: false, reason: 'BadSignature', message: 'the signature value is not the base64 of 64 bytes' };
  }
  let bytes: Buffer;
  try {
    bytes = signedBytes(envelope, node);
  } catch (err) {
    if (err instanceof NotCanonicalizable) return { ok: false, reason: 'BadSignature', message: `the message cannot be canonicalized: ${err.message}` };
    throw err;
  }
  if (!verify(null, bytes, key, value)) {
    return { ok: false, reason: 'BadSignature', message: `the signature by key ${sig.keyId} does not match this message for node ${node} (altered, or addressed to another node)` };
  }
  return { ok: true, keyId: sig.keyId };
}

/** An Ed25519 public key from PEM (SPKI, as `openssl pkey -pubout` writes it). */
export function publicKeyFromPem(pem: string | Buffer): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`not an Ed25519 public key (${key.asymmetricKeyType})`);
  return key;
}

/** An Ed25519 private key from PEM (PKCS#8, as `openssl genpkey -algorithm ed25519` writes it). */
export function privateKeyFromPem(pem: string | Buffer): KeyObject {
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`not an Ed25519 private key (${key.asymmetricKeyType})`);
  return key;
}

/** A new key pair as PEM, for `modeld-controller keygen`. */
export function generateSigningKey(): { privatePem: string; publicPem: string; keyId: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    keyId: keyIdOf(publicKey),
  };
}
