import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { envOverrides, loadConfig } from '../../agent/config/load.js';

// Environment variables the launcher (bin/modeld) reads are not config overrides, though they
// start with MODELD_ like every override does.

let dir: string;
let file: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'config-env-'));
  file = join(dir, 'config.yaml');
  writeFileSync(file, 'node:\n  name: edge-1\n');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('environment overrides', () => {
  it('MODELD_NODE (the node binary bin/modeld runs) is not taken as the config key `node`', () => {
    expect(envOverrides({ MODELD_NODE: '/usr/bin/node', MODELD_CONFIG: file })).toEqual({});
    const config = loadConfig({ path: file, env: { MODELD_NODE: '/usr/bin/node' } });
    expect(config.node.name).toBe('edge-1');
  });

  it('still takes every other MODELD_ variable, node.* included', () => {
    expect(envOverrides({ MODELD_NODE__NAME: 'edge-2', MODELD_STATE_DIR: '/srv/modeld' })).toEqual({ node: { name: 'edge-2' }, stateDir: '/srv/modeld' });
    expect(loadConfig({ path: file, env: { MODELD_NODE__NAME: 'edge-2' } }).node.name).toBe('edge-2');
  });
});
