import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { keyIdOf, privateKeyFromPem, signEnvelope } from '../shared/signing.js';
import { createPublicKey } from 'node:crypto';

// Signs every message to a node (issue 14): with a key, the envelope gets its `signature` over
// the envelope plus the node it is addressed to; without one, messages go unsigned as before.
// Both transports publish the string this returns, so MQTT and the Router carry the same bytes.

export interface EnvelopeSigner {
  /** The keyId of the signing key; undefined when messages go unsigned. */
  readonly keyId: string | undefined;
  /** The wire payload of `envelope`, addressed to `node`. */
  payload(node: string, envelope: Record<string, unknown>): string;
}

export function envelopeSigner(privateKey?: KeyObject): EnvelopeSigner {
  if (!privateKey) return { keyId: undefined, payload: (_node, envelope) => JSON.stringify(envelope) };
  const keyId = keyIdOf(createPublicKey(privateKey));
  return { keyId, payload: (node, envelope) => JSON.stringify(signEnvelope(envelope, node, privateKey)) };
}

export class SigningKeyError extends Error {}

/** The private key from its file (a mounted Secret): PKCS#8 PEM, Ed25519. */
export function loadSigningKey(file: string): KeyObject {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    throw new SigningKeyError(`--signing-key-file: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return privateKeyFromPem(pem);
  } catch (err) {
    throw new SigningKeyError(`--signing-key-file: ${file} is not an Ed25519 private key in PEM (make one with \`modeld-controller keygen --out <dir>\` or \`openssl genpkey -algorithm ed25519\`): ${(err as Error).message}`);
  }
}
