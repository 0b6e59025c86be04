import { Readable } from 'node:stream';
import type { FileHead, FileService, Files, OpenedFile, PutRequest } from '../dedup/service.js';
import { AppError, backendUnavailable, notFound } from '../errors.js';
import type { LockManager, LockSession } from '../locks/port.js';
import { inSession, withLock } from '../locks/port.js';
import type { DeleteFileResult } from '../metastore/port.js';
import type { Logger } from '../observability/logger.js';
import { copyOnce } from './copy.js';
import type { MigrationMetrics } from './metrics.js';
import type { OldStore } from './source.js';

export interface LiveMigrationOptions {
  files: FileService;
  /** Where files not here yet are read from (the old server, or a V1 folder). */
  source: OldStore;
  locks: LockManager;
  lockTimeoutMs: number;
  logger: Logger;
  metrics?: MigrationMetrics | undefined;
}

/**
 * The server during a live migration (SPEC §7): s3dedup serves as usual,
 * and for what it does not have yet it turns to the old Filetracker.
 * - GET of a file it does not have copies the file in from the old store,
 *   then serves it; HEAD answers from the old server's headers (gzip, as
 *   stored here) and copies it in behind;
 * - PUT and DELETE go to both, the old store after s3dedup (a DELETE of a
 *   file only the old store has deletes it there);
 * - /list merges both;
 * - an old store that fails is a 503, never a 404.
 * Each path's copy-in and writes hold `migrate:<path>` (with PostgreSQL
 * locks, across instances), so a copy never brings back a file a DELETE
 * has just removed, nor overwrites a newer PUT.
 */
export class LiveMigration implements Files {
  constructor(private readonly o: LiveMigrationOptions) {}

  async head(path: string): Promise<FileHead> {
    try {
      return await this.o.files.head(path);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    const old = await this.fallback(() => this.o.source.head(path));
    if (!old) {
      this.o.metrics?.fallbacks.inc({ outcome: 'absent' });
      throw notFound(`File ${path}`);
    }
    if (old.encoding !== 'gzip' || old.length === undefined || old.logicalSize === undefined) {
      // Raw content (V1): the gzip this server would answer with is not known
      // before it is stored, so the copy comes first.
      await this.copyIn(path);
      return this.o.files.head(path);
    }
    // The old server's headers, as the issue asks. The copy stores the same gzip
    // bytes, so they are this server's too, unless the content was already here
    // in other gzip bytes (then the stored size differs, as between any two servers).
    this.copyIn(path).catch((err: unknown) => {
      this.o.logger.warn({ err, path }, 'could not copy in a file after a HEAD');
    });
    return { path, version: old.version, logicalSize: old.logicalSize, storedSize: old.length };
  }

  async open(path: string, signal?: AbortSignal): Promise<OpenedFile> {
    try {
      return await this.o.files.open(path, signal);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    await this.copyIn(path, signal);
    return this.o.files.open(path, signal);
  }

  async put(req: PutRequest, signal?: AbortSignal): Promise<number> {
    return this.locked(req.path, async (session) => {
      // A path not here yet may be on the old store with a newer version,
      // which must win as it would have there (SPEC §2): it is copied in
      // first, and the put below then changes nothing.
      if (!(await this.has(req.path))) {
        const old = await this.fallback(() => this.o.source.head(req.path, signal));
        if (old && old.version > req.version) {
          await this.copyInLocked(req.path, signal, session);
        }
      }
      const stored = await this.o.files.put(req, signal, session);
      // The old store gets what was stored here (gzip, checked), and applies
      // its own version rule.
      const put = this.o.source.put?.bind(this.o.source);
      if (stored === req.version && put) {
        const { file, body } = await this.o.files.open(req.path, signal);
        try {
          await this.fallback(() =>
            put(req.path, {
              version: stored,
              body,
              length: file.storedSize,
              logicalSize: file.logicalSize,
              sha256: file.hash,
            }),
          );
        } finally {
          // Refused before it was read (the old server down): let the stored object go.
          if (body instanceof Readable && !body.readableEnded) {
            body.on('error', () => {});
            body.destroy();
          }
        }
      }
      return stored;
    });
  }

  async delete(path: string, version: number, signal?: AbortSignal): Promise<DeleteFileResult> {
    return this.locked(path, async (session) => {
      // The old store first: if it fails, the file is still here and a retry
      // deletes both; the other way round, a failure would leave it only on
      // the old store, and the next GET would copy it back.
      const remove = this.o.source.delete?.bind(this.o.source);
      const there = remove ? await this.fallback(() => remove(path, version)) : 'absent';
      let here: DeleteFileResult = { outcome: 'absent' };
      try {
        here = await this.o.files.delete(path, version, signal, session);
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      if (here.outcome === 'absent' && there === 'absent') throw notFound(`File ${path}`);
      return here.outcome === 'absent' ? { outcome: 'deleted', version } : here;
    });
  }

  async *list(dir: string, maxVersion: number): AsyncGenerator<string> {
    const list = this.o.source.list?.bind(this.o.source);
    if (!list) {
      yield* this.o.files.list(dir, maxVersion);
      return;
    }
    // The old server lists in its walk order: both sides are gathered and
    // sorted, which costs memory in proportion to the directory, as /list does.
    const names = new Set<string>();
    for await (const path of this.o.files.list(dir, maxVersion)) names.add(path);
    await this.fallback(async () => {
      for await (const path of list(dir, maxVersion)) names.add(path);
    });
    yield* [...names].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  }

  checkTempDir(): Promise<void> {
    return this.o.files.checkTempDir();
  }

  /**
   * Copies a file in from the old store, under its path's migration lock
   * (the background copy takes it too); NOT_FOUND when the old store does
   * not have it either.
   */
  copyIn(path: string, signal?: AbortSignal): Promise<'copied' | 'skipped'> {
    return this.locked(path, (session) => this.copyInLocked(path, signal, session));
  }

  private async copyInLocked(
    path: string,
    signal: AbortSignal | undefined,
    session: LockSession,
  ): Promise<'copied' | 'skipped'> {
    let done: Awaited<ReturnType<typeof copyOnce>>;
    try {
      done = await copyOnce({ files: this.o.files, source: this.o.source }, path, signal, session);
    } catch (err) {
      const failure = asFallbackError(err, path, signal);
      if (failure instanceof AppError && failure.backend === 'filetracker') {
        this.o.metrics?.fallbacks.inc({ outcome: 'failed' });
      }
      throw failure;
    }
    if (done.outcome === 'absent') {
      this.o.metrics?.fallbacks.inc({ outcome: 'absent' });
      throw notFound(`File ${path}`);
    }
    this.o.metrics?.fallbacks.inc({ outcome: 'found' });
    return done.outcome === 'failed' ? 'skipped' : done.outcome;
  }

  private async has(path: string): Promise<boolean> {
    try {
      await this.o.files.head(path);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  /** copyOnce for the background copy: the same lock as requests. */
  readonly copyLocked: typeof copyOnce = (o, path, signal) =>
    this.locked(path, (session) => copyOnce(o, path, signal, session));

  /**
   * Runs `fn` holding `migrate:<path>`, in a lock session that `fn` passes
   * down to the store, so that one request holds one lock connection
   * (PostgreSQL locks), however many locks it takes.
   */
  private locked<T>(path: string, fn: (session: LockSession) => Promise<T>): Promise<T> {
    return inSession(this.o.locks, (session) =>
      withLock(session, `migrate:${path}`, 'exclusive', { timeoutMs: this.o.lockTimeoutMs }, () =>
        fn(session),
      ),
    );
  }

  /** A call to the old store; its failures are counted (they are 503s, never 404s). */
  private async fallback<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      if (err instanceof AppError && err.backend === 'filetracker') {
        this.o.metrics?.fallbacks.inc({ outcome: 'failed' });
      }
      throw err;
    }
  }
}

/**
 * What a client asking for a file is told when the copy from the old store
 * failed: the old store's body refused by the checks here (bad gzip, a size
 * or hash that does not match) is the old store's fault, a 502, not the
 * client's 400; a body cut off is the old store gone away, a 503.
 */
function asFallbackError(err: unknown, path: string, signal?: AbortSignal): unknown {
  if (!(err instanceof AppError)) return err;
  switch (err.code) {
    case 'CLIENT_ABORTED':
      if (signal?.aborted) return err;
      return backendUnavailable(
        'filetracker',
        `the old Filetracker's answer for ${path} was cut off`,
        err,
      );
    case 'CHECKSUM_MISMATCH':
    case 'SIZE_MISMATCH':
    case 'INVALID_GZIP':
    case 'INVALID_HEADER':
    case 'TOO_LARGE':
    case 'INVALID_PATH':
      return new AppError(
        'BAD_GATEWAY',
        `could not copy ${path} from the old Filetracker: ${err.message}`,
        {
          cause: err,
          backend: 'filetracker',
        },
      );
    default:
      return err;
  }
}

function isNotFound(err: unknown): boolean {
  return err instanceof AppError && err.code === 'NOT_FOUND';
}
