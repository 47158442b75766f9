import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/faults/**', 'test/interop/**', '**/node_modules/**'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // child processes and private brokers: keep the 2-core machine from thrashing
    pool: 'forks',
    maxWorkers: 2,
  },
});
