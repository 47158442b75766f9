import { defineConfig } from 'vitest/config';

// The fault-injection suite (npm run test:faults): real daemons, brokers, mounts; one scenario
// file at a time so that timing faults are not distorted by a neighbour on this 2-core machine.
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    globalSetup: ['test/faults/global-setup.ts'],
    testTimeout: 1_200_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
  },
});
