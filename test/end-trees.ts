import { afterAll } from 'vitest';
import { endAllTrees } from './helpers/process-tree.js';

// A setup file (vitest setupFiles), registered first so it runs after the file's own afterAll
// hooks: whatever a test of the file started with spawnTree and left running is ended here —
// a failed or timed-out test skips its own cleanup — and fails the file, naming it, so a
// missing cleanup does not pass unseen behind this net.
afterAll(async () => {
  const left = await endAllTrees();
  if (left.length > 0) throw new Error(`left running by this file (now killed):\n  ${left.map((p) => `pid ${p.pid}: ${p.cmdline}`).join('\n  ')}`);
});
