import { InferenceModelSpecShape, ManifestEntrySchema } from '../../shared/index.js';
import { didYouMean } from '../did-you-mean.js';

// `kubectl apply --validate=strict` for what `modeld apply` reads: every field of the resource
// must be one the InferenceModel schema or Kubernetes' ObjectMeta knows, at every depth, or the
// file is refused naming the field's path and the closest known name. The wire from the
// controller stays lenient (an older agent must take a newer controller's fields); a person's
// file is strict, because a typo there silently deploys something else (`targetVerison`).
//
// A resource exported with `kubectl get -o yaml` applies as it is: `status` and the metadata the
// API server sets (uid, resourceVersion, generation, managedFields, ...) are known and ignored.

const TOP = ['apiVersion', 'kind', 'metadata', 'spec', 'status'];
// ObjectMeta (k8s.io/apimachinery/pkg/apis/meta/v1/types.go): all of it is known; only name
// and namespace are used.
const META = [
  'name',
  'generateName',
  'namespace',
  'selfLink',
  'uid',
  'resourceVersion',
  'generation',
  'creationTimestamp',
  'deletionTimestamp',
  'deletionGracePeriodSeconds',
  'labels',
  'annotations',
  'ownerReferences',
  'finalizers',
  'managedFields',
];
// The seed's misspelled `fraemworkType` is part of the shape, so it stays accepted.
const SPEC = Object.keys(InferenceModelSpecShape.shape);
const ENTRY = Object.keys(ManifestEntrySchema.shape);

const isMap = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

function unknownIn(obj: unknown, known: string[], path: string, out: string[]): void {
  if (!isMap(obj)) return; // a wrong type is the schema's to report
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) out.push(`unknown field "${path}${key}"${didYouMean(key, known, path)}`);
  }
}

/** Every field of `doc` unknown to the resource's schema, each with its path and a suggestion. */
export function unknownFields(doc: Record<string, unknown>): string[] {
  const out: string[] = [];
  unknownIn(doc, TOP, '', out);
  unknownIn(doc.metadata, META, 'metadata.', out);
  unknownIn(doc.spec, SPEC, 'spec.', out);
  const manifest = isMap(doc.spec) ? doc.spec.manifest : undefined;
  if (Array.isArray(manifest)) manifest.forEach((entry, i) => unknownIn(entry, ENTRY, `spec.manifest[${i}].`, out));
  return out;
}
