import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { snapshotDir } from '../helpers/dir-snapshot.js';
import { expectOneLineError, inferenceModel, offlineNodeConfig, runCli, writeConfig, writeYaml } from '../helpers/modeld-cli.js';

// Strict input where a person types it (`kubectl apply --validate=strict`): a field unknown to
// the InferenceModel schema or to ObjectMeta, at any depth, refuses the file with its path and
// the closest known name, and changes nothing. The seed's `fraemworkType` is known; a resource
// exported with kubectl (status, server-set metadata) applies as it is. The config file too.

let work: string;
let configFile: string;
let stateDir: string;
const SHA = 'ab'.repeat(32);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-strict-'));
  const config = await offlineNodeConfig(work);
  stateDir = config.stateDir;
  configFile = writeConfig(config);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const base = () => inferenceModel('linear', [{ version: '1', sha256: SHA }, { version: '2', sha256: SHA.replace('a', 'c') }], { targetVersion: '1' });

describe('modeld apply refuses unknown fields with their path and a suggestion', () => {
  const cases: Array<{ what: string; edit: (doc: any) => void; line: RegExp }> = [
    { what: 'spec.targetVerison', edit: (d) => ((d.spec.targetVerison = d.spec.targetVersion), delete d.spec.targetVersion), line: /unknown field "spec\.targetVerison" \(did you mean "spec\.targetVersion"\?\)/ },
    { what: 'metadata.namepsace', edit: (d) => ((d.metadata.namepsace = 'prod'), delete d.metadata.namespace), line: /unknown field "metadata\.namepsace" \(did you mean "metadata\.namespace"\?\)/ },
    { what: 'spec.replica', edit: (d) => (d.spec.replica = 2), line: /unknown field "spec\.replica" \(did you mean "spec\.replicas"\?\)/ },
    { what: 'a manifest entry', edit: (d) => ((d.spec.manifest[1].sha256Sum = SHA), delete d.spec.manifest[1].sha256sum), line: /unknown field "spec\.manifest\[1\]\.sha256Sum" \(did you mean "spec\.manifest\[1\]\.sha256sum"\?\)/ },
    { what: 'top level', edit: (d) => ((d.apiVersoin = d.apiVersion), delete d.apiVersion), line: /unknown field "apiVersoin" \(did you mean "apiVersion"\?\)/ },
    { what: 'no close name', edit: (d) => (d.spec.colour = 'red'), line: /unknown field "spec\.colour"$/ },
    {
      what: 'several at once',
      edit: (d) => ((d.spec.replica = 2), (d.metadata.lables = {})),
      line: /strict decoding error: unknown field "metadata\.lables" \(did you mean "metadata\.labels"\?\), unknown field "spec\.replica" \(did you mean "spec\.replicas"\?\)$/,
    },
  ];
  for (const c of cases) {
    it(`${c.what}: exit 2, nothing stored`, async () => {
      const doc = base();
      c.edit(doc);
      const file = writeYaml(join(work, `typo-${c.what.replace(/\W+/g, '-')}.yaml`), doc);
      const before = snapshotDir(stateDir);
      const r = await runCli(configFile, ['apply', '-f', file]);
      expect(r.code, r.stderr).toBe(2);
      expect(expectOneLineError(r)).toMatch(c.line);
      expect(r.stdout).toBe('');
      expect(snapshotDir(stateDir)).toEqual(before);
    });
  }

  it('the second document of a file is named', async () => {
    const good = base();
    const bad = base();
    bad.metadata.name = 'other';
    (bad.spec as any).targetVerison = '2';
    const file = join(work, 'two.yaml');
    writeFileSync(file, `${JSON.stringify(good)}\n---\n${JSON.stringify(bad)}\n`);
    const r = await runCli(configFile, ['apply', '-f', file]);
    expect(r.code).toBe(2);
    expect(expectOneLineError(r)).toMatch(/two\.yaml \(document 2\): strict decoding error: unknown field "spec\.targetVerison"/);
  });

  it("accepts the seed's fraemworkType and writes frameworkType", async () => {
    const doc: any = base();
    doc.metadata.name = 'seedspelling';
    doc.spec.modelName = 'seedspelling';
    doc.spec.fraemworkType = 'onnx';
    delete doc.spec.frameworkType;
    const r = await runCli(configFile, ['apply', '-f', writeYaml(join(work, 'seed-spelling.yaml'), doc)]);
    expect(r.code, r.stderr).toBe(0);
    const got = await runCli(configFile, ['get', 'seedspelling', '-o', 'json']);
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout).spec).toMatchObject({ frameworkType: 'onnx' });
    expect(JSON.parse(got.stdout).spec.fraemworkType).toBeUndefined();
  });

  it('applies a resource exported with kubectl: status and server-set metadata are ignored', async () => {
    const doc: any = base();
    doc.metadata = {
      ...doc.metadata,
      name: 'exported',
      uid: '7c0e7c36-0a4e-4f7e-9d1a-2f4c4e0e0c11',
      resourceVersion: '81234',
      generation: 7,
      creationTimestamp: '2025-01-01T00:00:00Z',
      labels: { team: 'vision' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}' },
      managedFields: [{ manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'ai.kubeedge.io/v1alpha1', fieldsType: 'FieldsV1', fieldsV1: {} }],
    };
    doc.spec.modelName = 'exported';
    doc.status = { nodes: [{ node: 'edge-1', phase: 'Serving' }], readyNodes: 1 };
    const r = await runCli(configFile, ['apply', '-f', writeYaml(join(work, 'exported.yaml'), doc)]);
    expect(r.code, r.stderr).toBe(0);
    // A local spec numbers its own generations: the API server's 7 is not taken.
    expect(r.stdout).toBe('default/exported created (generation 1)\n');
  });
});

describe('the config file refuses unknown keys with a suggestion', () => {
  it('top level and nested', async () => {
    const file = join(work, 'typo-config.yaml');
    writeFileSync(file, `stateDri: ${stateDir}\nbroker:\n  urll: mqtt://127.0.0.1:1\nadmin: { socket: ${join(work, 'x.sock')} }\n`);
    const r = await runCli(file, ['status']);
    expect(r.code).toBe(78);
    const line = expectOneLineError(r);
    expect(line).toMatch(/unknown key "broker\.urll" \(did you mean "broker\.url"\?\)/);
    expect(line).toMatch(/unknown key "stateDri" \(did you mean "stateDir"\?\)/);
  });
});
