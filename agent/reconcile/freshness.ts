import type { Accepted } from '../store/freshness.js';

// Whether a signed message is newer than what the node accepted before (issue 14), pure. A
// signature proves who wrote a message, not when: without this, a recorded genuine message
// (an old version, a delete) could be published again at any time.

export type Freshness = { fresh: true } | { fresh: false; why: string };

/**
 * A spec or delete for one resource: newer by generation, then by header.sequence (a staged
 * rollout sends one generation several times). A resource made again (another uid) starts its
 * generations anew: only the sequence, which never goes back for a node, orders it then.
 */
export function resourceFreshness(have: Accepted | undefined, got: Accepted, opts: { byGeneration: boolean }): Freshness {
  if (!have) return { fresh: true };
  const sameResource = !have.uid || !got.uid || have.uid === got.uid;
  if (opts.byGeneration && sameResource) {
    if (got.generation > have.generation) return { fresh: true };
    if (got.generation < have.generation) return { fresh: false, why: `generation ${got.generation} is older than the accepted ${have.generation}` };
  }
  // The very message accepted last, again (MQTT QoS 1 delivers at least once): harmless, answered as before.
  if (got.sequence === have.sequence && (!opts.byGeneration || !sameResource || got.generation === have.generation)) return { fresh: true };
  if (got.sequence > have.sequence) return { fresh: true };
  return { fresh: false, why: `sequence ${got.sequence} is not above the accepted ${have.sequence}${opts.byGeneration && sameResource ? ` (same generation ${got.generation})` : ''}` };
}

/**
 * A sync: fresh when its sequence is above every message the node accepted, or when it echoes
 * the nonce of the node's current hello and no sync has used that nonce yet (a controller whose
 * sequences lag, e.g. a new leader; the nonce proves it was made after this connect). The last
 * sync again, when nothing was accepted after it, is a duplicate delivery and passes too.
 */
export function syncFreshness(
  maxSequence: number | undefined,
  sequence: number,
  nonce: string | undefined,
  current: { nonce?: string; used: boolean },
  /** The sequence of the last sync accepted: the same sync again, with nothing accepted since, is a duplicate. */
  lastSync?: number,
): Freshness {
  if (maxSequence === undefined || sequence > maxSequence) return { fresh: true };
  if (sequence === maxSequence && sequence === lastSync) return { fresh: true };
  if (nonce !== undefined && nonce === current.nonce && !current.used) return { fresh: true };
  const echo = nonce === undefined ? 'echoes no hello nonce' : nonce === current.nonce ? 'echoes a hello nonce a sync has used already' : 'does not echo the current hello nonce';
  return { fresh: false, why: `sync sequence ${sequence} is not above the accepted ${maxSequence} and it ${echo}` };
}
