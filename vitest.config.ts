import { defineConfig } from 'vitest/config';

// The fast suite: `npm test`, which needs Node alone. Long money-path runs live in
// vitest.safety.config.ts; tests that need system programs or root in vitest.integration.config.ts.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/safety/**', 'test/integration/**', 'node_modules/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
