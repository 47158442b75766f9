import { defineConfig } from 'vitest/config';

// The broker interoperability suite (npm run test:interop): slow (it starts nats-server and a
// RabbitMQ node), so it is not part of npm test. One file, run in order: the table is built from
// every case.
export default defineConfig({
  test: {
    include: ['test/interop/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
