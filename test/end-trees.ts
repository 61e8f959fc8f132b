import { afterAll } from 'vitest';
import { endAllTrees } from './helpers/process-tree.js';

// A setup file (vitest setupFiles): whatever a test of the file started with spawnTree and did
// not end — a failed or timed-out test skips its own cleanup — ends with the file, not with the
// run. Registered first, so it runs after the file's own afterAll hooks.
afterAll(endAllTrees);
