import { evaluate } from '@marcbachmann/cel-js';

// The API server's x-kubernetes-validations: each rule string of the CRD itself, evaluated by a
// CEL library (not a copy of the rule in TypeScript), with `self` bound to the value at the rule's
// schema node and `oldSelf` to the stored value on an update. What it follows, from
// apiextensions-apiserver:
// - pkg/apiserver/schema/cel/validation.go: a failed rule is a field error at the node's path
//   (plus the rule's fieldPath), value "the node's type", detail = message, else
//   messageExpression, else "failed rule: <rule>"; reason picks the error type (FieldValueInvalid
//   by default, FieldValueForbidden, FieldValueRequired, FieldValueDuplicate). A rule that uses
//   oldSelf (a transition rule) runs only on updates where the old value exists.
// - pkg/registry/customresource/strategy.go hasBlockingErr: when the schema validation already
//   found a type, required, enum, too-long or too-many error, no rule runs and one error says so.
// Integers reach CEL as int (BigInt here), as the real server types them from the schema.
// Not emulated: the cost estimator and the runtime cost budget, ratcheting, optional types.

type Schema = Record<string, any>;

export interface CelError {
  field: string;
  reason: string;
  /** `<field>: Invalid value: "object": <message>`, the string field.Error renders. */
  text: string;
}

export const BLOCKED = 'some validation rules were not checked because the object was invalid; correct the existing errors to complete validation';

/** Schema-validation messages (schema.ts) whose error types block CEL. */
export function isBlocking(schemaError: string): boolean {
  return /: (Unsupported value|Required value|Too long|Too many|Invalid value: "[a-z]+": must be of type)/.test(schemaError);
}

function typed(schema: Schema | undefined, v: unknown): unknown {
  if (v === null || v === undefined || !schema) return v;
  if (schema.type === 'integer' && typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  if (Array.isArray(v)) return v.map((x) => typed(schema.items, x));
  if (typeof v === 'object') {
    const out: Record<string, unknown> = {};
    // A field set to undefined (a test's direct create) is absent, as in the JSON a client sends.
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = typed(schema.properties?.[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined), x);
    return out;
  }
  return v;
}

const RENDER: Record<string, (path: string, type: string, msg: string) => string> = {
  FieldValueInvalid: (p, t, m) => `${p}: Invalid value: "${t}": ${m}`,
  FieldValueForbidden: (p, _t, m) => `${p}: Forbidden: ${m}`,
  FieldValueRequired: (p, _t, m) => `${p}: Required value: ${m}`,
  FieldValueDuplicate: (p, t, m) => `${p}: Duplicate value: "${t}": ${m}`,
};

export function celErrors(schema: Schema | undefined, value: unknown, old: unknown, path = ''): CelError[] {
  if (!schema || value === undefined || value === null) return [];
  const errors: CelError[] = [];
  for (const rule of (schema['x-kubernetes-validations'] ?? []) as Array<{ rule: string; message?: string; messageExpression?: string; fieldPath?: string; reason?: string }>) {
    const transition = /\boldSelf\b/.test(rule.rule);
    if (transition && old === undefined) continue;
    const vars = { self: typed(schema, value), ...(transition ? { oldSelf: typed(schema, old) } : {}) };
    let ok: unknown;
    let failure: string | undefined;
    try {
      ok = evaluate(rule.rule, vars);
    } catch (err) {
      // A rule that cannot be evaluated on this value is an error of the object, as there.
      failure = `failed rule: ${rule.rule}: ${(err as Error).message.split('\n')[0]}`;
    }
    if (ok === true) continue;
    let message = rule.message ?? failure ?? `failed rule: ${rule.rule}`;
    if (rule.messageExpression) {
      try {
        const m = evaluate(rule.messageExpression, vars);
        if (typeof m === 'string' && m.trim()) message = m;
      } catch {
        // The real server falls back to message (or the default) too.
      }
    }
    const field = (path || '<nil>') + (rule.fieldPath ? rule.fieldPath : '');
    const reason = rule.reason ?? 'FieldValueInvalid';
    errors.push({ field: field.replace(/^<nil>\./, ''), reason, text: (RENDER[reason] ?? RENDER.FieldValueInvalid)(field.replace(/^<nil>\./, ''), schema.type, message) });
  }
  if (Array.isArray(value)) {
    // An item has an old value only in a map list (matched by its keys), as there.
    const keys: string[] | undefined = schema['x-kubernetes-list-type'] === 'map' ? schema['x-kubernetes-list-map-keys'] : undefined;
    const oldItem = (v: any) => (keys && Array.isArray(old) ? old.find((o: any) => keys.every((k) => o?.[k] === v?.[k])) : undefined);
    value.forEach((v, i) => errors.push(...celErrors(schema.items, v, oldItem(v), `${path}[${i}]`)));
  } else if (typeof value === 'object') {
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const sub = schema.properties?.[k] ?? (typeof schema.additionalProperties === 'object' ? schema.additionalProperties : undefined);
      const o = old && typeof old === 'object' ? (old as Record<string, unknown>)[k] : undefined;
      errors.push(...celErrors(sub, v, o, path ? `${path}.${k}` : k));
    }
  }
  return errors;
}
