/**
 * Named reader/writer locks. The dedup core takes `path:` locks exclusively
 * for PUT/DELETE (per-path linearizability), `blob:` locks shared while it
 * makes a path point at a blob (so the cleaner, which takes them exclusively,
 * cannot delete a blob a PUT is about to reference), and `commit:` locks
 * exclusively around the moment a new blob becomes visible.
 *
 * Locks are taken through a session: one per request. A distributed
 * implementation holds all of a session's locks on one database connection,
 * so a request never waits for a second connection while holding a lock on
 * the first, and a bounded pool can never deadlock against itself.
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

export interface LockSession {
  acquire(key: string, mode: LockMode, options: LockOptions): Promise<Lock>;
  /** Releases whatever the session still holds; idempotent. */
  end(): Promise<void>;
}

export interface LockManager {
  session(): LockSession;
  close(): Promise<void>;
}

/** Runs `fn` holding the lock and releases it however `fn` ends. */
export async function withLock<T>(
  session: LockSession,
  key: string,
  mode: LockMode,
  options: LockOptions,
  fn: () => Promise<T>,
): Promise<T> {
  const lock = await session.acquire(key, mode, options);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

/** Runs `fn` with a fresh session and ends the session however `fn` ends. */
export async function inSession<T>(
  locks: LockManager,
  fn: (session: LockSession) => Promise<T>,
): Promise<T> {
  const session = locks.session();
  try {
    return await fn(session);
  } finally {
    await session.end();
  }
}
