import { createPublicKey } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { envelopeSigner } from '../../controller/signer.js';
import { makeEnvelope, resourcePath } from '../../shared/index.js';
import { generateSigningKey, keyIdOf, privateKeyFromPem, verifyEnvelope } from '../../shared/signing.js';

// Any single-byte change of a signed payload, as the controller makes it (controller/signer.ts),
// is refused, or reads as the very same envelope (fast-check, seeded).

/** Another seed explores further: SIGNING_PROPERTY_SEED=7 npx vitest run test/shared/signing-mutation.property.test.ts */
const SEED = Number(process.env.SIGNING_PROPERTY_SEED ?? 14);
const RUNS = 5000;
const NODE = 'edge-1';

describe(`signed payload, one byte changed (fast-check seed ${SEED})`, () => {
  it(`is refused or parses to the identical envelope (${RUNS} runs)`, () => {
    const pair = generateSigningKey();
    const privateKey = privateKeyFromPem(pair.privatePem);
    const publicKey = createPublicKey(privateKey);
    const trusted = new Map([[keyIdOf(publicKey), publicKey]]);
    const content = {
      metadata: { namespace: 'default', name: 'resnet', uid: 'u-1', generation: 7 },
      spec: {
        modelName: 'resnet',
        manifest: [{ version: '1', downloadURL: 'https://models.example/resnet-1.tgz', sha256sum: 'ab'.repeat(32) }],
        targetVersion: '1',
      },
    };
    const payload = Buffer.from(envelopeSigner(privateKey).payload(NODE, makeEnvelope('update', content as never, { source: 'modeld-controller', resource: resourcePath('default', 'resnet'), sequence: 1_700_000_000_000_000 })));
    const original = JSON.parse(payload.toString());
    expect(verifyEnvelope(original, NODE, trusted).ok).toBe(true);
    let refused = 0;
    fc.assert(
      fc.property(fc.nat({ max: payload.length - 1 }), fc.integer({ min: 1, max: 255 }), (at, delta) => {
        const mutated = Buffer.from(payload);
        mutated[at] = (mutated[at] + delta) % 256;
        let raw: unknown;
        try {
          raw = JSON.parse(mutated.toString());
        } catch {
          refused++;
          return; // not JSON: refused before any signature is looked at
        }
        if (!verifyEnvelope(raw, NODE, trusted).ok) {
          refused++;
          return;
        }
        expect(raw).toEqual(original);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    expect(refused).toBeGreaterThan(RUNS * 0.99);
  });
});
