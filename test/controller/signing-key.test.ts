import { createPublicKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildProgram, keygen, runController } from '../../controller/main.js';
import { DEFAULTS } from '../../controller/options.js';
import { loadSigningKey } from '../../controller/signer.js';
import { keyIdOf, publicKeyFromPem } from '../../shared/signing.js';

// The controller's key: `modeld-controller keygen`, and --signing-key-file read at start.

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'ctl-key-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('controller signing key', () => {
  it('keygen writes private.pem (0600) and public.pem, prints the keyId, and never overwrites', () => {
    const out: string[] = [];
    const err: string[] = [];
    expect(keygen(join(dir, 'k'), (l) => out.push(l), (l) => err.push(l))).toBe(0);
    expect(statSync(join(dir, 'k', 'private.pem')).mode & 0o777).toBe(0o600);
    const key = loadSigningKey(join(dir, 'k', 'private.pem'));
    const keyId = keyIdOf(createPublicKey(key));
    expect(keyIdOf(publicKeyFromPem(readFileSync(join(dir, 'k', 'public.pem'))))).toBe(keyId);
    expect(out[0]).toBe(`keyId ${keyId}`);
    const before = readFileSync(join(dir, 'k', 'private.pem'), 'utf8');
    expect(keygen(join(dir, 'k'), (l) => out.push(l), (l) => err.push(l))).toBe(1);
    expect(err[0]).toMatch(/EEXIST/);
    expect(readFileSync(join(dir, 'k', 'private.pem'), 'utf8')).toBe(before);
  });

  it('--signing-key-file (or $MODELD_SIGNING_KEY_FILE): a missing or non-Ed25519 file stops the controller at once (exit 2), saying why', async () => {
    let got: string | undefined;
    await buildProgram(async (o) => ((got = o.signingKeyFile), 0)).parseAsync(['node', 'modeld-controller', '--signing-key-file', '/x/private.pem']);
    expect(got).toBe('/x/private.pem');
    const lines: string[] = [];
    const log = pino({ level: 'info' }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
    expect(await runController({ ...DEFAULTS, signingKeyFile: join(dir, 'missing.pem') }, log)).toBe(2);
    expect(lines.join('')).toMatch(/cannot read .*missing\.pem: ENOENT/);
    writeFileSync(join(dir, 'rsa.pem'), '-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n');
    expect(await runController({ ...DEFAULTS, signingKeyFile: join(dir, 'rsa.pem') }, log)).toBe(2);
    expect(lines.join('')).toMatch(/is not an Ed25519 private key in PEM/);
  });
});
