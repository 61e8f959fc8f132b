import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeEnvelope, resourcePath } from '../../shared/envelope.js';
import { generateSigningKey, keyIdOf, privateKeyFromPem, publicKeyFromPem, signEnvelope, verifyEnvelope } from '../../shared/signing.js';

// Ed25519 over RFC 8785: what the controller signs, the node checks — whatever re-encoded it on
// the way, and nothing else: not another node's message, not an altered one, not an unknown key.

const SEED = Number(process.env.FC_SEED ?? 14);

const spec = (version: string) =>
  makeEnvelope(
    'update',
    { apiVersion: 'ai.kubeedge.io/v1alpha1', kind: 'InferenceModel', metadata: { name: 'linear', namespace: 'default', generation: 3 }, spec: { modelName: 'linear', targetVersion: version, manifest: [{ version, downloadURL: `https://models.example.com/linear-${version}.tgz`, sha256sum: 'a'.repeat(64) }] } } as never,
    { source: 'modeld-controller', resource: resourcePath('default', 'linear') },
  ) as unknown as Record<string, unknown>;

describe('signed envelopes', () => {
  const a = generateSigningKey();
  const b = generateSigningKey();
  const trusted = new Map([[a.keyId, publicKeyFromPem(a.publicPem)]]);

  it('verifies what was signed for this node, through any JSON re-encoding', () => {
    const signed = signEnvelope(spec('2'), 'edge-01', privateKeyFromPem(a.privatePem));
    expect(signed.signature).toMatchObject({ alg: 'Ed25519', keyId: a.keyId });
    expect(verifyEnvelope(JSON.parse(JSON.stringify(signed)), 'edge-01', trusted)).toEqual({ ok: true, keyId: a.keyId });
    // Go's encoding/json (KubeEdge's router): other member order, <>& escaped, other spacing.
    const reorder = (x: unknown): unknown =>
      Array.isArray(x) ? x.map(reorder) : x && typeof x === 'object' ? Object.fromEntries(Object.entries(x).reverse().map(([k, y]) => [k, reorder(y)])) : x;
    const goStyle = JSON.stringify(reorder(signed), null, 1).replace(/&/g, '\\u0026').replace(/\//g, '\\/');
    expect(verifyEnvelope(JSON.parse(goStyle), 'edge-01', trusted).ok).toBe(true);
  });

  it('refuses: unsigned, unknown key, addressed to another node, and any change', () => {
    const signed = signEnvelope(spec('2'), 'edge-01', privateKeyFromPem(a.privatePem));
    expect(verifyEnvelope(spec('2'), 'edge-01', trusted)).toMatchObject({ ok: false, reason: 'Unsigned' });
    expect(verifyEnvelope(signEnvelope(spec('2'), 'edge-01', privateKeyFromPem(b.privatePem)), 'edge-01', trusted)).toMatchObject({ ok: false, reason: 'UnknownKey' });
    expect(verifyEnvelope(signed, 'edge-02', trusted)).toMatchObject({ ok: false, reason: 'BadSignature' });
    const altered = JSON.parse(JSON.stringify(signed));
    altered.content.spec.manifest[0].sha256sum = `b${'a'.repeat(63)}`;
    expect(verifyEnvelope(altered, 'edge-01', trusted)).toMatchObject({ ok: false, reason: 'BadSignature' });
    const truncated = { ...signed, signature: { ...signed.signature, value: signed.signature.value.slice(0, 20) } };
    expect(verifyEnvelope(truncated, 'edge-01', trusted)).toMatchObject({ ok: false, reason: 'BadSignature' });
  });

  it('any one changed byte of the JSON text is refused or parses to the same message (property)', () => {
    console.log(`signing property seed ${SEED}`);
    const signed = JSON.stringify(signEnvelope(spec('7'), 'edge-01', privateKeyFromPem(a.privatePem)));
    fc.assert(
      fc.property(fc.nat({ max: signed.length - 1 }), fc.integer({ min: 32, max: 126 }), (at, code) => {
        const text = signed.slice(0, at) + String.fromCharCode(code) + signed.slice(at + 1);
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          return; // not JSON: refused before any check
        }
        const same = JSON.stringify(parsed) === JSON.stringify(JSON.parse(signed));
        expect(verifyEnvelope(parsed, 'edge-01', trusted).ok).toBe(same);
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it('takes keys made by openssl genpkey -algorithm ed25519, and names them by the same key id', () => {
    const dir = mkdtempSync(join(tmpdir(), 'modeld-keys-'));
    try {
      execFileSync('openssl', ['genpkey', '-algorithm', 'ed25519', '-out', join(dir, 'k.pem')]);
      execFileSync('openssl', ['pkey', '-in', join(dir, 'k.pem'), '-pubout', '-out', join(dir, 'k.pub')]);
      const priv = privateKeyFromPem(readFileSync(join(dir, 'k.pem')));
      const pub = publicKeyFromPem(readFileSync(join(dir, 'k.pub')));
      const signed = signEnvelope(spec('1'), 'edge-01', priv);
      expect(signed.signature.keyId).toBe(keyIdOf(pub));
      expect(verifyEnvelope(signed, 'edge-01', new Map([[keyIdOf(pub), pub]])).ok).toBe(true);
      execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-out', join(dir, 'ec.pem')]);
      expect(() => privateKeyFromPem(readFileSync(join(dir, 'ec.pem')))).toThrow(/not an Ed25519 private key/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
