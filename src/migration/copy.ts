import { checkSegments } from '../dedup/paths.js';
import type { Files } from '../dedup/service.js';
import { AppError, type ErrorCode } from '../errors.js';
import type { LockSession } from '../locks/port.js';
import type { OldStore } from './source.js';

export type CopyOutcome =
  | { outcome: 'copied'; bytes: number }
  | { outcome: 'skipped' }
  | { outcome: 'failed'; reason: string };

export interface CopyOptions {
  files: Files;
  source: OldStore;
  /** Attempts of a copy that fails for a reason that may pass (a network error, a 5xx, a timeout). */
  attempts: number;
  /** First pause between attempts; it doubles each time. */
  backoffMs: number;
  /** One attempt, when not copyOnce() itself (live migration takes a lock around it). */
  copy?: typeof copyOnce;
}

/** Errors worth another attempt: something down or slow, on either side, or a transfer cut off. */
const TRANSIENT: ReadonlySet<ErrorCode> = new Set([
  'BACKEND_UNAVAILABLE',
  'LOCK_TIMEOUT',
  'CLIENT_ABORTED',
]);

/**
 * Copies one file from the old Filetracker into s3dedup, with its version.
 * A file already here with the same or a newer version is skipped (the
 * answer's head is enough to tell; its body is not read), so copying again
 * is harmless and a rerun finishes an interrupted migration. The content is
 * checked on the way in like any upload: gzip, Logical-Size, and the
 * SHA-256 it is stored under is computed from the bytes themselves.
 */
export async function copyFile(
  o: CopyOptions,
  path: string,
  signal?: AbortSignal,
): Promise<CopyOutcome> {
  try {
    checkSegments(path);
  } catch (err) {
    return { outcome: 'failed', reason: `cannot be stored here: ${(err as Error).message}` };
  }
  for (let attempt = 1; ; attempt++) {
    try {
      const done = await (o.copy ?? copyOnce)(o, path, signal);
      if (done.outcome === 'absent') {
        return { outcome: 'failed', reason: `not on ${o.source.name} any more (404)` };
      }
      return done;
    } catch (err) {
      const code = err instanceof AppError ? err.code : undefined;
      const transient = code !== undefined && TRANSIENT.has(code);
      if (!transient || attempt >= o.attempts || signal?.aborted) {
        return { outcome: 'failed', reason: (err as Error).message };
      }
      await new Promise((r) => setTimeout(r, o.backoffMs * 2 ** (attempt - 1)));
    }
  }
}

/**
 * One attempt: 'absent' when the old store does not have the file; a
 * failure is thrown (as BACKEND_UNAVAILABLE when the old store failed).
 */
export async function copyOnce(
  o: Pick<CopyOptions, 'files' | 'source'>,
  path: string,
  signal?: AbortSignal,
  /** The caller's lock session (live migration's), passed to the store. */
  session?: LockSession,
): Promise<CopyOutcome | { outcome: 'absent' }> {
  const local = await o.files.head(path).catch((err: unknown) => {
    if (err instanceof AppError && err.code === 'NOT_FOUND') return null;
    throw err;
  });
  if (local) {
    // A rerun: the old store's head tells whether there is anything to copy,
    // without starting a body that would be thrown away.
    const head = await o.source.head(path, signal);
    if (!head) return { outcome: 'absent' };
    if (local.version >= head.version) return { outcome: 'skipped' };
  }
  const old = await o.source.fetch(path, signal);
  if (!old) return { outcome: 'absent' };
  if (local && local.version >= old.version) {
    // Changed back on the old store in between: nothing to copy after all.
    old.body.on('error', () => {});
    old.body.destroy();
    return { outcome: 'skipped' };
  }
  try {
    await o.files.put(
      {
        path,
        version: old.version,
        body: old.body,
        encoding: old.encoding,
        hints: { logicalSize: old.logicalSize },
        declaredLength: old.length,
      },
      signal,
      session,
    );
  } finally {
    // Refused before its end was read (too large, a newer version here): the
    // old server's answer is let go, not left holding its connection.
    if (!old.body.readableEnded) {
      old.body.on('error', () => {});
      old.body.destroy();
    }
  }
  return { outcome: 'copied', bytes: old.logicalSize ?? old.length ?? 0 };
}
