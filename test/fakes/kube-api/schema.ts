// What the API server does with a custom resource's structural schema: reject values that break
// it (422 with field paths) and prune fields it does not declare.

type Schema = Record<string, any>;

export function validate(schema: Schema | undefined, value: unknown, path = ''): string[] {
  if (!schema || value === undefined) return [];
  if (value === null) return schema.nullable ? [] : [`${path || '<root>'}: Invalid value: "null": must not be null`];
  const errors: string[] = [];
  const at = path || '<root>';
  const type = schema.type;
  const actual = Array.isArray(value) ? 'array' : Number.isInteger(value) ? 'integer' : typeof value;
  if (type === 'integer' && actual !== 'integer') return [`${at}: Invalid value: "${actual}": must be of type integer`];
  if (type === 'number' && typeof value !== 'number') return [`${at}: Invalid value: "${actual}": must be of type number`];
  if (type === 'string' && typeof value !== 'string') return [`${at}: Invalid value: "${actual}": must be of type string`];
  if (type === 'boolean' && typeof value !== 'boolean') return [`${at}: Invalid value: "${actual}": must be of type boolean`];
  if (type === 'array' && !Array.isArray(value)) return [`${at}: Invalid value: "${actual}": must be of type array`];
  if (type === 'object' && (typeof value !== 'object' || Array.isArray(value))) return [`${at}: Invalid value: "${actual}": must be of type object`];
  if (schema.enum && !schema.enum.includes(value)) errors.push(`${at}: Unsupported value: ${JSON.stringify(value)}: supported values: ${schema.enum.map((e: unknown) => JSON.stringify(e)).join(', ')}`);
  if (typeof value === 'string') {
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${at}: Too long: may not be longer than ${schema.maxLength}`);
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${at}: Invalid value: "${value}": should be at least ${schema.minLength} chars long`);
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) errors.push(`${at}: Invalid value: "${value}": should match '${schema.pattern}'`);
    if (schema.format === 'date-time' && Number.isNaN(Date.parse(value))) errors.push(`${at}: Invalid value: "${value}": must be a date-time`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${at}: Invalid value: ${value}: should be greater than or equal to ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${at}: Invalid value: ${value}: should be less than or equal to ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${at}: Too many: ${value.length}: must have at most ${schema.maxItems} items`);
    value.forEach((v, i) => errors.push(...validate(schema.items, v, `${path}[${i}]`)));
  } else if (typeof value === 'object') {
    const obj = value as Record<string, unknown>;
    for (const r of schema.required ?? []) if (obj[r] === undefined) errors.push(`${path ? path + '.' : ''}${r}: Required value`);
    if (schema.maxProperties !== undefined && Object.keys(obj).length > schema.maxProperties) errors.push(`${at}: Too many: must have at most ${schema.maxProperties} items`);
    for (const [k, v] of Object.entries(obj)) {
      const sub = schema.properties?.[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      errors.push(...validate(sub, v, path ? `${path}.${k}` : k));
    }
  }
  return errors;
}

/** Drops fields the schema does not declare (unless it preserves unknown fields). */
export function prune(schema: Schema | undefined, value: any): any {
  if (!schema || value === null || typeof value !== 'object' || schema['x-kubernetes-preserve-unknown-fields']) return value;
  if (Array.isArray(value)) return value.map((v) => prune(schema.items, v));
  if (schema.type !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (schema.properties?.[k]) out[k] = prune(schema.properties[k], v);
    else if (typeof schema.additionalProperties === 'object') out[k] = prune(schema.additionalProperties, v);
    else if (!schema.properties && !schema.additionalProperties) out[k] = v;
  }
  return out;
}
