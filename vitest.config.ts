import { defineConfig } from 'vitest/config';

// Tests that measure time against a real dependency (Redis killed or paused, recovery within a second,
// exact counts across processes, worker replacement, an upstream killed mid-load) run in a second group,
// one file at a time, after everything else: on a 2-core machine a parallel e2e file next to them would
// measure the neighbour, not the gateway.
const timing = [
  'test/e2e/ratelimit-faults.test.ts',
  'test/e2e/ratelimit-accuracy.test.ts',
  'test/ratelimit/cluster-sentinel.test.ts',
  'test/ratelimit/redis-store.test.ts',
  'test/e2e/lifecycle.test.ts',
  'test/e2e/ingress.test.ts',
  'test/e2e/seeds/000-rust-api.test.ts', // Redis killed mid-test
  'test/e2e/seeds/004-external-auth-api.test.ts', // auth-service backoff and 5s timeout measured
];

const shared = {
  pool: 'forks' as const,
  testTimeout: 30_000,
  hookTimeout: 30_000,
};

export default defineConfig({
  test: {
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: 'test-results/vitest.json' },
    projects: [
      {
        test: {
          ...shared,
          name: 'main',
          include: ['test/**/*.test.ts'],
          exclude: timing,
          // Two cores: e2e files spawn gateways, upstreams and Redis of their own.
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        test: {
          ...shared,
          name: 'timing',
          include: timing,
          fileParallelism: false,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
