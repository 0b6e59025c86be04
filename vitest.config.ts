import { defineConfig } from 'vitest/config';

/** Tests that need no service: `npx vitest run --project unit` runs them in seconds. */
const unit = ['test/unit/**/*.test.ts', 'test/lint.test.ts'];

export default defineConfig({
  test: {
    // Native addons (better-sqlite3) and child processes behave best in forked workers.
    pool: 'forks',
    // Two test files at once, whatever the core count (Vitest's default is one
    // fewer than the cores: one on CI's 2-core machines). The services tests
    // mostly wait on the processes they start; on a 2-core machine the suite
    // took 825 s instead of 1,289 s, with the same memory peaks (2026-12-02).
    // Files never share a bucket, a database, a folder or a port. Tests with
    // a time bound leave room for a neighbour's load (sqlite-locked.test.ts).
    maxWorkers: 2,
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
