import { describe, expect, it } from 'vitest';
import type { StatusReport } from '../../agent/admin/status-view.js';
import { renderStatus } from '../../agent/cli/status.js';

// `modeld status`'s table (pure): the BACKEND column says which onnxruntime serves a built-in
// model in the runtime host, "-" where the node does not know (its own process, external runtimes).

const model = (name: string, backend?: string) => ({
  node: 'n',
  namespace: 'default',
  name,
  observedGeneration: 1,
  phase: 'Serving' as const,
  servingVersion: '1',
  targetVersion: '1',
  url: `http://127.0.0.1:8000/v2/models/${name}`,
  replicas: 1,
  readyReplicas: 1,
  versions: [],
  time: '2024-01-01T00:00:00.000Z',
  source: 'cloud' as const,
  generation: 1,
  ...(backend ? { backend } : {}),
});

describe('modeld status table', () => {
  it('shows the backend of each model served in the host, "-" for the others', () => {
    const report: StatusReport = { daemon: true, node: 'n', stateDir: '/s', models: [model('a', 'native'), model('b', 'wasm'), model('c')] };
    const lines = renderStatus(report).trim().split('\n');
    expect(lines[0]).toMatch(/^MODEL\s+SOURCE\s+PHASE\s+SERVING\s+TARGET\s+READY\s+BACKEND\s+URL\s+REASON$/);
    expect(lines[1]).toMatch(/^default\/a\s+cloud\s+Serving\s+1\s+1\s+1\/1\s+native\s+http:/);
    expect(lines[2]).toMatch(/^default\/b\s+cloud\s+Serving\s+1\s+1\s+1\/1\s+wasm\s+http:/);
    expect(lines[3]).toMatch(/^default\/c\s+cloud\s+Serving\s+1\s+1\s+1\/1\s+-\s+http:/);
  });
});
