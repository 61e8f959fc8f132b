import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { envOverrides, parseConfig } from '../../agent/config/load.js';
import { configKeys, renderTemplate, withTable } from '../../scripts/config-doc.js';

// systemd/config.example.yaml and the table in docs/operations.md are generated from
// agent/config/schema.ts (npx tsx scripts/gen-config-doc.ts); they must be current.

const ROOT = resolve(import.meta.dirname, '../..');

describe('config template and table', () => {
  it('are current with the schema', () => {
    expect(readFileSync(join(ROOT, 'systemd/config.example.yaml'), 'utf8')).toBe(renderTemplate());
    const doc = readFileSync(join(ROOT, 'docs/operations.md'), 'utf8');
    expect(doc).toBe(withTable(doc));
  });

  it('the template is a valid config (every key commented out at its default) naming every key', () => {
    const text = readFileSync(join(ROOT, 'systemd/config.example.yaml'), 'utf8');
    expect(parseConfig(parse(text) ?? {})).toEqual(parseConfig({}));
    for (const k of configKeys()) expect(text, k.path).toMatch(new RegExp(`^#\\s+${k.path.split('.').at(-1)}:`, 'm'));
  });

  it('each documented environment variable sets its key', () => {
    for (const k of configKeys()) {
      const tree = envOverrides({ [k.env]: 'x' });
      let v: unknown = tree;
      for (const part of k.path.split('.')) v = (v as Record<string, unknown>)[part];
      expect(v, k.env).toBe('x');
    }
  });
});
