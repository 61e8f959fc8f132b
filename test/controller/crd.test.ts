import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { buildCrd, toStructural } from '../../controller/crd.js';
import { renderCrd } from '../../scripts/gen-crd.js';

describe('CRD', () => {
  it('the checked-in deploy/crd.yaml is what `npm run gen:crd` writes from shared/schema.ts', () => {
    const checkedIn = readFileSync(new URL('../../deploy/crd.yaml', import.meta.url), 'utf8');
    expect(checkedIn, 'deploy/crd.yaml is stale: run `npm run gen:crd`').toBe(renderCrd());
  });

  it('is a structural schema: every node typed, no $schema, no additionalProperties:false, nodeSelector a string map', () => {
    const crd = parse(renderCrd());
    const v = crd.spec.versions[0];
    const walk = (s: any, path: string) => {
      expect(s.type, `type at ${path}`).toBeTruthy();
      expect(s).not.toHaveProperty('$schema');
      expect(s).not.toHaveProperty('propertyNames');
      expect(s.additionalProperties === false, `additionalProperties:false at ${path}`).toBe(false);
      for (const [k, p] of Object.entries(s.properties ?? {})) walk(p, `${path}.${k}`);
      if (s.items) walk(s.items, `${path}[]`);
      if (typeof s.additionalProperties === 'object') walk(s.additionalProperties, `${path}{}`);
    };
    walk(v.schema.openAPIV3Schema, '');
    const spec = v.schema.openAPIV3Schema.properties.spec;
    expect(spec.required).toEqual(['modelName', 'deployToLayer']);
    expect(spec.properties.nodeSelector).toMatchObject({ type: 'object', additionalProperties: { type: 'string' } });
    expect(spec.properties).toHaveProperty('fraemworkType');
    expect(v.subresources).toEqual({ status: {} });
    expect(crd.spec.names.shortNames).toEqual(['im']);
    expect(v.additionalPrinterColumns.map((c: any) => c.name)).toEqual(['Target', 'Serving', 'Ready', 'Phase', 'Model', 'Age']);
    // Bounds the CEL cost estimate needs (a pattern bounds no length), and a status bounded by its caps.
    expect(spec['x-kubernetes-validations'].map((r: any) => r.rule)).toEqual([expect.stringContaining('self.manifest.exists(m, m.version == self.targetVersion)')]);
    expect(spec.properties.manifest).toMatchObject({ maxItems: 256, items: { properties: { version: { maxLength: 63 }, sha256sum: { maxLength: 64 } } } });
    expect(spec.properties.targetVersion.maxLength).toBe(63);
    const status = v.schema.openAPIV3Schema.properties.status.properties;
    expect(status.nodes.maxItems).toBe(20);
    expect(status.versions.maxItems).toBe(16);
    expect(v.schema.openAPIV3Schema.properties.status.properties.conditions['x-kubernetes-list-map-keys']).toEqual(['type']);
  });

  it('refuses a schema node without a type', () => {
    expect(() => toStructural({ properties: { a: {} } })).toThrow(/without a type/);
    expect(buildCrd()).toBeTruthy();
  });
});
