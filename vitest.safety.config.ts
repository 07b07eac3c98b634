import { defineConfig } from 'vitest/config';

// `npm run test:safety`: crash storms, fault matrix, fuzzing, soak. Sized to fit CI on 2 cores.
export default defineConfig({
  test: {
    include: ['test/safety/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 60_000,
  },
});
