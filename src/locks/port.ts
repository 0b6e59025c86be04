/**
 * Named reader/writer locks. The dedup core takes `path:` locks exclusively
 * for PUT/DELETE (per-path linearizability) and `blob:` locks shared while it
 * makes a path point at a blob, so the cleaner (exclusive) can never delete a
 * blob that a PUT is about to reference.
 */
export type LockMode = 'shared' | 'exclusive';

export interface LockOptions {
  /** Give up after this long with a LOCK_TIMEOUT error (a 503 for the client). */
  timeoutMs: number;
  signal?: AbortSignal | undefined;
}

export interface Lock {
  /** Idempotent. */
  release(): Promise<void>;
}

export interface LockManager {
  acquire(key: string, mode: LockMode, options: LockOptions): Promise<Lock>;
  close(): Promise<void>;
}

/** Runs `fn` holding the lock and releases it however `fn` ends. */
export async function withLock<T>(
  locks: LockManager,
  key: string,
  mode: LockMode,
  options: LockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await locks.acquire(key, mode, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
