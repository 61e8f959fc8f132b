import type { InferenceModelSpec, ManifestEntry } from './schema.js';

// Which manifest entry a spec targets. Rule (documented in the README): `targetVersion` names an
// entry; when it is empty the highest version wins, compared numerically when both are integers,
// otherwise lexically (so "10" > "9", but "v10" < "v9").

const INTEGER = /^\d+$/;

export function compareVersions(a: string, b: string): number {
  if (INTEGER.test(a) && INTEGER.test(b)) {
    const x = BigInt(a);
    const y = BigInt(b);
    return x === y ? 0 : x < y ? -1 : 1;
  }
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The targeted manifest entry, or undefined when the spec names none that exists. */
export function resolveTarget(spec: Pick<InferenceModelSpec, 'manifest' | 'targetVersion'>): ManifestEntry | undefined {
  const manifest = spec.manifest ?? [];
  if (spec.targetVersion) return manifest.find((m) => m.version === spec.targetVersion);
  return manifest.reduce<ManifestEntry | undefined>(
    (best, m) => (!best || compareVersions(m.version, best.version) > 0 ? m : best),
    undefined,
  );
}

export interface SpecProblem {
  reason: 'TargetVersionNotInManifest' | 'DuplicateVersion' | 'EmptyManifest' | 'MissingDigest';
  message: string;
}

/**
 * Checks what the structural schema cannot: the parts of a spec that must agree with each other.
 * Image specs are not checked against the manifest (the seed says it is ignored for them).
 */
export function specProblems(spec: InferenceModelSpec, opts: { requireDigest: boolean }): SpecProblem[] {
  if (spec.image) return [];
  const manifest = spec.manifest ?? [];
  const problems: SpecProblem[] = [];
  if (manifest.length === 0) problems.push({ reason: 'EmptyManifest', message: 'neither image nor manifest is set' });
  const seen = new Set<string>();
  for (const m of manifest) {
    if (seen.has(m.version)) problems.push({ reason: 'DuplicateVersion', message: `version "${m.version}" appears more than once in manifest` });
    seen.add(m.version);
  }
  if (spec.targetVersion && !seen.has(spec.targetVersion)) {
    problems.push({ reason: 'TargetVersionNotInManifest', message: `targetVersion "${spec.targetVersion}" is not in manifest (has: ${[...seen].join(', ') || 'none'})` });
  }
  const target = resolveTarget(spec);
  if (opts.requireDigest && target && !target.sha256sum) {
    problems.push({ reason: 'MissingDigest', message: `version "${target.version}" has no sha256sum and unverified downloads are not allowed` });
  }
  return problems;
}
