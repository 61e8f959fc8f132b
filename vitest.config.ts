import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Fails the run on a process or temp folder a test left behind (see the file).
    globalSetup: ['test/leak-check.ts'],
    setupFiles: ['test/end-trees.ts', 'test/no-proxy.ts'],
    // Generous and bounded: the suite must pass on a loaded machine, and a broken test still fails.
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Tests start real brokers, servers and child processes; two cores run them best a few at a time.
    fileParallelism: true,
    maxWorkers: 2,
    pool: 'forks',
  },
});
