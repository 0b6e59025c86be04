import { Histogram, type Registry } from 'prom-client';
import type { LockManager } from './port.js';

/** s3dedup_lock_wait_seconds: how long requests wait for their locks, by kind. */
export function lockWaitHistogram(registry: Registry): Histogram<'kind'> {
  return new Histogram({
    name: 's3dedup_lock_wait_seconds',
    help: 'Time to acquire a lock (path, blob, commit, migrate, cleaner), including waits that ended in a timeout',
    labelNames: ['kind'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
}

/**
 * The same locks, with every acquire timed. The kind is the key's first word
 * ("path:a/b" → path, "cleaner" → cleaner), never the key itself: one
 * series per kind, however many paths.
 */
export function timedLocks(locks: LockManager, wait: Histogram<'kind'>): LockManager {
  return {
    session() {
      const session = locks.session();
      return {
        async acquire(key, mode, options) {
          const start = process.hrtime.bigint();
          try {
            return await session.acquire(key, mode, options);
          } finally {
            const kind = /^[a-z]+/.exec(key)?.[0] ?? 'other';
            wait.observe({ kind }, Number(process.hrtime.bigint() - start) / 1e9);
          }
        },
        end: () => session.end(),
      };
    },
    close: () => locks.close(),
  };
}
