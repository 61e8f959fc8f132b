import type { StatusContent } from '../../shared/index.js';
import { WAITING_FOR_SLOT } from '../reconcile/node-limits.js';

// Turns the stream of statuses (Reporter.report is the one place they are made) into the events
// metrics count: a download or an install finished (with its duration), a digest failure, a
// switch of the serving version, a rollback. Pure bookkeeping: the clock is passed in. A switch
// is a change of the serving tree: a version republished with other bytes is one too.

export type TrackedEvent =
  | { kind: 'downloaded'; namespace: string; name: string; seconds: number }
  | { kind: 'installed'; namespace: string; name: string; seconds: number }
  | { kind: 'digestFailure'; namespace: string; name: string }
  | { kind: 'switch'; namespace: string; name: string; from: string; to: string; rollback: boolean };

interface Seen {
  phase: string;
  reason?: string;
  downloadSince?: number;
  installSince?: number;
  /** The serving and previous trees, as `<version>@<sha256>` (the version alone when the status names no digest). */
  serving?: string;
  servingVersion?: string;
  previous?: string;
}

type Versions = NonNullable<StatusContent['versions']>;
const treeOf = (version: string, versions: Versions | undefined, state: 'serving' | 'previous') => {
  const sha = versions?.find((v) => v.state === state && v.version === version)?.sha256sum;
  return sha ? `${version}@${sha}` : version;
};

export class StatusTracker {
  private readonly models = new Map<string, Seen>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** The events this status completes, in order. */
  observe(s: StatusContent): TrackedEvent[] {
    const key = `${s.namespace}/${s.name}`;
    const ref = { namespace: s.namespace, name: s.name };
    const out: TrackedEvent[] = [];
    const t = this.now();
    const seen = this.models.get(key);
    if (s.phase === 'Deleted') {
      this.models.delete(key);
      return out;
    }
    const next: Seen = { ...(seen ?? {}), phase: s.phase, reason: s.reason };
    // Waiting for a node-wide slot (limits.*) is queueing, not work: the clock starts after it.
    const waiting = s.reason === WAITING_FOR_SLOT;
    const started = (phase: string) => s.phase === phase && !waiting && (seen?.phase !== phase || seen.reason === WAITING_FOR_SLOT);

    if (started('Downloading')) next.downloadSince = t;
    if (s.phase === 'Verifying' && seen?.downloadSince !== undefined) {
      out.push({ kind: 'downloaded', ...ref, seconds: (t - seen.downloadSince) / 1000 });
    }
    if (s.phase !== 'Downloading') next.downloadSince = undefined;

    if (started('Installing')) next.installSince = t;
    if (seen?.phase === 'Installing' && s.phase !== 'Installing' && s.phase !== 'Failed' && seen.installSince !== undefined) {
      out.push({ kind: 'installed', ...ref, seconds: (t - seen.installSince) / 1000 });
    }
    if (s.phase !== 'Installing') next.installSince = undefined;

    if (s.phase === 'Failed' && s.reason === 'DigestMismatch' && !(seen?.phase === 'Failed' && seen.reason === 'DigestMismatch')) {
      out.push({ kind: 'digestFailure', ...ref });
    }

    // A status answering a rejected message carries no servingVersion change of its own.
    if (s.servingVersion !== undefined) {
      const serving = treeOf(s.servingVersion, s.versions, 'serving');
      if (seen?.serving !== undefined && serving !== seen.serving) {
        out.push({ kind: 'switch', ...ref, from: seen.servingVersion!, to: s.servingVersion, rollback: serving === seen.previous });
      }
      next.serving = serving;
      next.servingVersion = s.servingVersion;
      const previous = s.versions?.find((v) => v.state === 'previous');
      next.previous = previous && treeOf(previous.version, s.versions, 'previous');
    }
    this.models.set(key, next);
    return out;
  }
}
