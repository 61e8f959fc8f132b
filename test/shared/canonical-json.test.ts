import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, NotCanonicalizable } from '../../shared/canonical-json.js';

// RFC 8785's own examples, and properties: the canonical form of a value does not depend on how
// it was serialised on the way (key order, whitespace, escapes), and it parses back to the value.

const SEED = Number(process.env.FC_SEED ?? 8785);

describe('canonicalJson (RFC 8785)', () => {
  it('sorts members by UTF-16 code units and writes numbers as ECMAScript does (RFC 8785 §3.2.3, appendix B)', () => {
    // §3.2.3's sorting example: keys "\u20ac", "\r", "\ufb33", "1", "\ud83d\ude00", "\u0080", "\u00f6".
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    expect(canonicalJson(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    expect(canonicalJson({ numbers: [333333333.33333329, 1e30, 4.5, 2e-3, 0.000000000000000000000000001], literals: [null, true, false] })).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}',
    );
    expect(canonicalJson({ string: '\u20ac$\u000f\u000aA\'\u0042\u0022\u005c\\"/' })).toBe('{"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}');
    expect(canonicalJson(-0)).toBe('0');
  });

  it('refuses what is not I-JSON: lone surrogates, NaN, Infinity', () => {
    expect(() => canonicalJson({ a: '\ud800' })).toThrow(NotCanonicalizable);
    expect(() => canonicalJson([Number.NaN])).toThrow(NotCanonicalizable);
    expect(() => canonicalJson(Number.POSITIVE_INFINITY)).toThrow(NotCanonicalizable);
  });

  it('is the same for any serialisation of the same value, and parses back to it', () => {
    console.log(`canonical-json property seed ${SEED}`);
    const json = fc.jsonValue({ noUnicodeString: false });
    fc.assert(
      fc.property(json, fc.integer({ min: 0, max: 4 }), (v, indent) => {
        const c = canonicalJson(v);
        // Another encoder: other whitespace, and every key order reversed.
        const reorder = (x: unknown): unknown =>
          Array.isArray(x) ? x.map(reorder) : x && typeof x === 'object' ? Object.fromEntries(Object.entries(x).reverse().map(([k, y]) => [k, reorder(y)])) : x;
        const other = JSON.parse(JSON.stringify(reorder(v), null, indent));
        expect(canonicalJson(other)).toBe(c);
        expect(JSON.parse(c)).toEqual(JSON.parse(JSON.stringify(v)));
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});
