import { describe, expect, it } from 'vitest';
import { resourceFreshness, syncFreshness } from '../../agent/reconcile/freshness.js';

// The replay rules of signed messages (issue 14), pure.

const have = { uid: 'u1', generation: 5, sequence: 100 };
const fresh = (got: { uid?: string; generation: number; sequence: number }, byGeneration = true) => resourceFreshness(have, got, { byGeneration }).fresh;

describe('resource freshness: by generation, then header.sequence', () => {
  it('orders one resource by generation, then sequence; the accepted message again is a duplicate, not a replay', () => {
    expect(resourceFreshness(undefined, { generation: 0, sequence: 0 }, { byGeneration: true }).fresh).toBe(true);
    expect(fresh({ uid: 'u1', generation: 6, sequence: 1 })).toBe(true); // newer generation, whatever the sequence
    expect(fresh({ uid: 'u1', generation: 4, sequence: 999 })).toBe(false); // older generation
    expect(fresh({ uid: 'u1', generation: 5, sequence: 101 })).toBe(true); // a rollout step of the same generation
    expect(fresh({ uid: 'u1', generation: 5, sequence: 99 })).toBe(false);
    expect(fresh({ uid: 'u1', generation: 5, sequence: 100 })).toBe(true); // QoS 1 duplicate
    expect(resourceFreshness(have, { uid: 'u1', generation: 4, sequence: 50 }, { byGeneration: true })).toEqual({ fresh: false, why: 'generation 4 is older than the accepted 5' });
  });

  it('a resource made again (another uid) and a delete are ordered by sequence alone', () => {
    expect(fresh({ uid: 'u2', generation: 1, sequence: 101 })).toBe(true);
    expect(fresh({ uid: 'u2', generation: 9, sequence: 99 })).toBe(false);
    expect(fresh({ uid: 'u1', generation: 0, sequence: 101 }, false)).toBe(true);
    expect(fresh({ uid: 'u1', generation: 9, sequence: 99 }, false)).toBe(false);
  });
});

describe('sync freshness: above every accepted sequence, or the current hello nonce once', () => {
  const hello = { nonce: 'n1', used: false };
  it('passes above the maximum, or with the current unused nonce, or as the last sync again', () => {
    expect(syncFreshness(undefined, 1, undefined, hello).fresh).toBe(true);
    expect(syncFreshness(100, 101, undefined, hello).fresh).toBe(true);
    expect(syncFreshness(100, 50, 'n1', hello).fresh).toBe(true);
    expect(syncFreshness(100, 50, 'n1', { nonce: 'n1', used: true }).fresh).toBe(false);
    expect(syncFreshness(100, 50, 'old', hello).fresh).toBe(false);
    expect(syncFreshness(100, 50, undefined, hello).fresh).toBe(false);
    expect(syncFreshness(100, 100, undefined, hello, 100).fresh).toBe(true); // duplicate of the last message, a sync
    expect(syncFreshness(100, 90, undefined, hello, 90).fresh).toBe(false); // that sync, after something newer
  });
});
