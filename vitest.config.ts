import { defineConfig } from 'vitest/config';

/** Tests that need no service: `npx vitest run --project unit` runs them in seconds. */
const unit = ['test/unit/**/*.test.ts', 'test/lint.test.ts'];

export default defineConfig({
  test: {
    // Native addons (better-sqlite3) and child processes behave best in forked workers.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    reporters: ['default', ['json', { outputFile: 'test-results/results.json' }]],
    projects: [
      { extends: true, test: { name: 'unit', include: unit } },
      {
        extends: true,
        test: {
          name: 'services',
          include: ['test/**/*.test.ts'],
          exclude: unit,
          // Real services (Ceph radosgw for S3, PostgreSQL), started once per run and always stopped.
          globalSetup: ['test/services/global-setup.ts'],
        },
      },
    ],
  },
});
