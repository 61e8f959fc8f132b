import type { Config } from '../config/schema.js';
import { isModeldError } from '../errors.js';
import { loadTrustedKeys } from '../security/trusted-keys.js';
import type { CheckResult } from './doctor-checks.js';

// `modeld doctor`: which keys this node trusts (security.trustedKeys), or a warning that
// messages from the cloud are not checked at all.

export function checkSigning(config: Config): CheckResult {
  const files = config.security.trustedKeys;
  if (files.length === 0) {
    return {
      name: 'signing',
      status: 'warn',
      message: 'security.trustedKeys is empty: specs from the cloud are not checked, so anyone who can publish on the broker can make this node serve or delete models (docs/security.md: Signing)',
    };
  }
  try {
    const keys = loadTrustedKeys(files);
    const local = config.security.allowLocalApply ? 'local specs (modeld apply) allowed' : 'local specs (modeld apply) refused';
    return { name: 'signing', status: 'ok', message: `trusted keys: ${keys.map((k) => `${k.file} (keyId ${k.keyId})`).join(', ')}; ${local}` };
  } catch (err) {
    if (isModeldError(err)) return { name: 'signing', status: 'fail', message: err.message };
    throw err;
  }
}
