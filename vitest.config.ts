import { defineConfig } from 'vitest/config';

// The fast suite: `npm test`. Long money-path runs live in vitest.safety.config.ts.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/safety/**', 'node_modules/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
