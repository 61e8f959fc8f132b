import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';

// The README's requests name models the shipped examples serve: the gateway's path is the
// spec's modelName (`resnet50`), not the resource's name (`resnet`).

const ROOT = resolve(import.meta.dirname, '../..');

describe('README examples', () => {
  it('every /v2/models/<name> in the README is a modelName of deploy/examples', () => {
    const dir = join(ROOT, 'deploy/examples');
    const modelNames = new Set(
      readdirSync(dir).flatMap((f) => parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => (d.toJS() as { spec?: { modelName?: string } } | null)?.spec?.modelName)),
    );
    const used = [...readFileSync(join(ROOT, 'README.md'), 'utf8').matchAll(/\/v2\/models\/([a-z0-9][a-z0-9.-]*)\//g)].map((m) => m[1]);
    expect(used.length).toBeGreaterThan(0);
    for (const name of used) expect({ name, inExamples: modelNames.has(name) }).toEqual({ name, inExamples: true });
  });
});
