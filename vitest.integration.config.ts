import { defineConfig } from 'vitest/config';

// `npm run test:integration`: tests that need system programs (promtool, prometheus, amtool,
// libfaketime, unshare, mount) and root. scripts/integration-preflight.mjs checks for them first.
// One file at a time: they start real Prometheus servers, namespaces and tmpfs mounts, and the
// CI machine has 2 cores.
export default defineConfig({
  test: {
    include: ['test/integration/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 120_000,
  },
});
