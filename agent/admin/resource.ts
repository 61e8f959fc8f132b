import { parseAllDocuments } from 'yaml';
import {
  API_GROUP,
  API_VERSION,
  InferenceModelSpecSchema,
  KIND,
  ObjectMetaSchema,
  describeZodError,
  type ModelContent,
} from '../../shared/index.js';
import { ModeldError } from '../errors.js';
import { unknownFields } from './strict-fields.js';

// An InferenceModel resource as a user writes it for `modeld apply -f` (the same YAML kubectl
// takes): apiVersion ai.kubeedge.io/v1alpha1, kind InferenceModel, metadata.name/namespace, spec.

export const RESOURCE_API_VERSION = `${API_GROUP}/${API_VERSION}`;
const MAX_TEXT = 1024 * 1024;

const bad = (where: string, message: string) => new ModeldError('BadRequest', `${where}: ${message}`);

/** One resource object (already parsed from YAML or JSON) -> validated content. */
export function resourceToContent(doc: unknown, where: string, defaultNamespace = 'default'): ModelContent {
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) throw bad(where, 'not an InferenceModel resource (expected a mapping)');
  const r = doc as Record<string, unknown>;
  // A missing apiVersion or kind is most likely misspelled: the unknown fields say which.
  const unknown = unknownFields(r);
  const strict = () => {
    if (unknown.length) throw bad(where, `strict decoding error: ${unknown.slice(0, 10).join(', ')}${unknown.length > 10 ? `, and ${unknown.length - 10} more` : ''}`);
  };
  if (r.apiVersion === undefined || r.kind === undefined) strict();
  if (r.apiVersion !== RESOURCE_API_VERSION) throw bad(where, `apiVersion must be ${RESOURCE_API_VERSION} (got ${JSON.stringify(r.apiVersion ?? null)})`);
  if (r.kind !== KIND) throw bad(where, `kind must be ${KIND} (got ${JSON.stringify(r.kind ?? null)})`);
  strict();
  const rawMeta = r.metadata && typeof r.metadata === 'object' ? (r.metadata as Record<string, unknown>) : {};
  // generation, uid and resourceVersion belong to the API server; a local spec numbers its own.
  const meta = ObjectMetaSchema.safeParse({ name: rawMeta.name, namespace: rawMeta.namespace ?? defaultNamespace });
  if (!meta.success) throw bad(where, `metadata.${describeZodError(meta.error)}`);
  const spec = InferenceModelSpecSchema.safeParse(r.spec);
  if (!spec.success) throw bad(where, `spec.${describeZodError(spec.error)}`);
  return { metadata: { name: meta.data.name, namespace: meta.data.namespace }, spec: spec.data };
}

/** A YAML (or JSON) file with one or more `---`-separated resources. */
export function parseResources(text: string, where: string, defaultNamespace = 'default'): ModelContent[] {
  if (text.length > MAX_TEXT) throw bad(where, `larger than ${MAX_TEXT} bytes`);
  const docs = parseAllDocuments(text);
  const list = Array.isArray(docs) ? docs : [docs];
  const out: ModelContent[] = [];
  for (const [i, d] of list.entries()) {
    const at = list.length > 1 ? `${where} (document ${i + 1})` : where;
    if (d.errors.length) throw bad(at, `not valid YAML: ${d.errors[0].message.split('\n')[0]}`);
    const value: unknown = d.toJS();
    if (value === null || value === undefined) continue; // an empty document between separators
    out.push(resourceToContent(value, at, defaultNamespace));
  }
  if (!out.length) throw bad(where, 'no InferenceModel resource in the file');
  return out;
}
