import { readFileSync } from 'node:fs';
import type { CliOptions } from './options.js';
import { OptionError } from './options.js';

// The broker's secrets come from files (a mounted Secret), never from the command line, where
// any local user sees them in `ps`. A file that cannot be read is an option error (exit 2),
// said with its flag.

export interface BrokerSecrets {
  password?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

function read(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new OptionError(`${flag}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** `env`: $MODELD_BROKER_PASSWORD, used when no --broker-password-file is given (a Secret as an env var). */
export function readBrokerSecrets(o: Pick<CliOptions, 'brokerPasswordFile' | 'brokerCa' | 'brokerCert' | 'brokerKey'>, env: NodeJS.ProcessEnv = process.env): BrokerSecrets {
  // A Secret's file often ends in a newline that is not part of the password.
  const password = o.brokerPasswordFile ? read('--broker-password-file', o.brokerPasswordFile).toString('utf8').replace(/\r?\n$/, '') : env.MODELD_BROKER_PASSWORD || undefined;
  const tls: BrokerSecrets['tls'] = {};
  if (o.brokerCa) tls.ca = read('--broker-ca', o.brokerCa);
  if (o.brokerCert) tls.cert = read('--broker-cert', o.brokerCert);
  if (o.brokerKey) tls.key = read('--broker-key', o.brokerKey);
  return { password, tls: Object.keys(tls).length ? tls : undefined };
}
