import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { keyIdOf, publicKeyFromPem } from '../../shared/signing.js';
import { ModeldError } from '../errors.js';

// The public keys this node trusts (security.trustedKeys), by keyId: a message must be signed by
// one of them. Two at once while the controller's key rotates.

export interface TrustedKey {
  file: string;
  keyId: string;
  key: KeyObject;
}

/** Reads every file; one that cannot be read or is not an Ed25519 public key is a config error (exit 78). */
export function loadTrustedKeys(files: readonly string[]): TrustedKey[] {
  return files.map((file, i) => {
    let pem: Buffer;
    try {
      pem = readFileSync(file);
    } catch (err) {
      throw new ModeldError('ConfigInvalid', `security.trustedKeys[${i}]: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
    }
    try {
      const key = publicKeyFromPem(pem);
      return { file, keyId: keyIdOf(key), key };
    } catch (err) {
      throw new ModeldError('ConfigInvalid', `security.trustedKeys[${i}]: ${file} is not an Ed25519 public key in PEM (modeld-controller keygen writes public.pem): ${(err as Error).message}`, { cause: err });
    }
  });
}

/** keyId -> key, as shared/signing.ts verifyEnvelope wants it. */
export const trustedKeyMap = (keys: readonly TrustedKey[]): Map<string, KeyObject> => new Map(keys.map((k) => [k.keyId, k.key]));
