// What the API server checks of a CustomResourceDefinition's schema before serving it: apiextensions
// v1 takes only STRUCTURAL schemas (KEP 1002). From kubernetes/kubernetes
// staging/src/k8s.io/apiextensions-apiserver/pkg/apiserver/schema/validation.go
// (validateStructuralInvariants, validateNestedValueValidation) and the completeness check of
// the same package: the messages and field paths below are the real ones.

type Schema = Record<string, any>;
type Level = 'root' | 'item' | 'field';

const JUNCTORS = ['allOf', 'anyOf', 'oneOf'] as const;
const isIntOrStringAnyOf = (a: unknown) =>
  Array.isArray(a) && a.length === 2 && a.some((x) => x?.type === 'integer' && Object.keys(x).length === 1) && a.some((x) => x?.type === 'string' && Object.keys(x).length === 1);

/** Every violation as `<path>: <Type>: <detail>`, the API server's field.Error strings. */
export function structuralErrors(schema: Schema | undefined, path: string): string[] {
  if (!schema || typeof schema !== 'object') return [`${path}: Required value: must not be empty`];
  const errors: string[] = [];
  walk(schema, 'root', path, errors);
  completeness(schema, schema, path, errors);
  return errors.sort();
}

function walk(s: Schema, level: Level, path: string, errors: string[]): void {
  if (s.type === 'array' && !s.items) errors.push(`${path}.items: Required value: must be specified`);
  if (Array.isArray(s.items)) errors.push(`${path}.items: Forbidden: items must be a schema object and not an array`);
  else if (s.items) walk(s.items, 'item', `${path}.items`, errors);
  for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) walk(v, 'field', `${path}.properties[${k}]`, errors);
  if (s.additionalProperties !== undefined && s.additionalProperties !== false) {
    if (level === 'root') errors.push(`${path}.additionalProperties: Forbidden: must not be used at the root`);
    if (s.properties) errors.push(`${path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive`);
    if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, 'field', `${path}.additionalProperties`, errors);
  }
  const intOrString = s['x-kubernetes-int-or-string'] === true;
  const preserve = s['x-kubernetes-preserve-unknown-fields'] === true;
  if (intOrString && preserve) errors.push(`${path}.x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true`);
  if (s['x-kubernetes-preserve-unknown-fields'] === false) errors.push(`${path}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined`);
  for (const j of JUNCTORS) {
    if (!Array.isArray(s[j])) continue;
    if (j === 'anyOf' && intOrString && isIntOrStringAnyOf(s[j])) continue;
    s[j].forEach((v: Schema, i: number) => nested(v, `${path}.${j}[${i}]`, errors));
  }
  if (s.not) nested(s.not, `${path}.not`, errors);
  for (const k of ['$ref', 'definitions', 'dependencies', 'patternProperties', 'additionalItems'])
    if (s[k] !== undefined) errors.push(`${path}.${k}: Forbidden: ${k} is not supported`);
  if (!s.type && !intOrString && !preserve) {
    const why = level === 'root' ? 'must not be empty at the root' : level === 'item' ? 'must not be empty for specified array items' : 'must not be empty for specified object fields';
    errors.push(`${path}.type: Required value: ${why}`);
  }
  if (level === 'root' && s.type && s.type !== 'object') errors.push(`${path}.type: Invalid value: "${s.type}": must be object at the root`);
  if (level !== 'root') return;
  for (const k of ['kind', 'apiVersion']) {
    const p = s.properties?.[k];
    if (p && p.type !== 'string') errors.push(`${path}.properties[${k}].type: Invalid value: "${p.type ?? ''}": must be string`);
  }
  const meta = s.properties?.metadata;
  if (meta) {
    if (meta.type !== 'object') errors.push(`${path}.properties[metadata].type: Invalid value: "${meta.type ?? ''}": must be object`);
    const extra = Object.keys(meta).filter((k) => k !== 'type' && k !== 'properties');
    const props = Object.keys(meta.properties ?? {}).filter((k) => k !== 'name' && k !== 'generateName');
    if (extra.length || props.length) errors.push(`${path}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified`);
  }
}

/** Inside allOf/anyOf/oneOf/not only value validations: no types, defaults, nullable, extensions, metadata. */
function nested(v: Schema, path: string, errors: string[]): void {
  if (!v || typeof v !== 'object') return;
  if (v.type !== undefined) errors.push(`${path}.type: Forbidden: must be empty to be structural`);
  if (v.additionalProperties !== undefined) errors.push(`${path}.additionalProperties: Forbidden: must be undefined to be structural`);
  if (v.default !== undefined) errors.push(`${path}.default: Forbidden: must be undefined to be structural`);
  if (v.title) errors.push(`${path}.title: Forbidden: must be empty to be structural`);
  if (v.description) errors.push(`${path}.description: Forbidden: must be empty to be structural`);
  if (v.nullable) errors.push(`${path}.nullable: Forbidden: must be false to be structural`);
  for (const x of ['x-kubernetes-preserve-unknown-fields', 'x-kubernetes-embedded-resource', 'x-kubernetes-int-or-string']) if (v[x]) errors.push(`${path}.${x}: Forbidden: must be false to be structural`);
  if (v.properties?.metadata) errors.push(`${path}.properties[metadata]: Forbidden: must not be specified in a nested context`);
  for (const [k, p] of Object.entries((v.properties ?? {}) as Record<string, Schema>)) nested(p, `${path}.properties[${k}]`, errors);
  if (v.items) nested(v.items, `${path}.items`, errors);
  for (const j of JUNCTORS) if (Array.isArray(v[j])) v[j].forEach((x: Schema, i: number) => nested(x, `${path}.${j}[${i}]`, errors));
  if (v.not) nested(v.not, `${path}.not`, errors);
}

/** validateStructuralCompleteness: a field named in a value validation must exist in the structure. */
function completeness(structure: Schema, s: Schema, path: string, errors: string[]): void {
  const check = (v: Schema, at: string, st: Schema | undefined) => {
    if (!v || typeof v !== 'object') return;
    for (const [k, p] of Object.entries((v.properties ?? {}) as Record<string, Schema>)) {
      const sp = st?.properties?.[k] ?? (typeof st?.additionalProperties === 'object' ? st.additionalProperties : undefined);
      if (!sp && !st?.['x-kubernetes-preserve-unknown-fields']) errors.push(`${at}.properties[${k}]: Required value: because it is defined in ${path}`);
      else check(p, `${at}.properties[${k}]`, sp);
    }
    if (v.items) check(v.items, `${at}.items`, st?.items);
  };
  for (const j of JUNCTORS) if (Array.isArray(s[j])) s[j].forEach((v: Schema) => check(v, path, s));
  if (s.not) check(s.not, path, s);
  for (const [k, p] of Object.entries((s.properties ?? {}) as Record<string, Schema>)) completeness(structure, p, `${path}.properties[${k}]`, errors);
  if (s.items && !Array.isArray(s.items)) completeness(structure, s.items, `${path}.items`, errors);
}
