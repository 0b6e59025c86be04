import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { BlobStore } from '../blobstore/port.js';
import { internal, notFound } from '../errors.js';
import { inSession, type LockManager, type LockSession, withLock } from '../locks/port.js';
import type { DeleteFileResult, FileRecord, MetaStore } from '../metastore/port.js';
import { crashPoint } from '../runtime/faults.js';
import { ContentIntake, type UploadBody } from './intake.js';
import { blobKey } from './keys.js';
import type { DedupMetrics } from './metrics.js';
import { UploadCheck } from './upload-check.js';

export interface FileServiceOptions {
  meta: MetaStore;
  blobs: BlobStore;
  locks: LockManager;
  logger: Logger;
  keyDepth: number;
  maxUploadSize: number;
  gzipLevel: number;
  verifyHints: boolean;
  tempDir: string;
  spillThreshold: number;
  lockTimeoutMs: number;
  now?: () => number;
  /** Dedup hits and misses (/metrics). */
  metrics?: DedupMetrics | undefined;
}

export interface PutRequest extends UploadBody {
  path: string;
  version: number;
}

export interface OpenedFile {
  file: FileRecord;
  /** The stored gzip bytes (a Buffer for small objects the store read whole). */
  body: Readable | Buffer;
}

/** What a HEAD answers: the file's version and sizes. */
export type FileHead = Pick<FileRecord, 'path' | 'version' | 'logicalSize' | 'storedSize'>;

/**
 * The Filetracker operations the protocol layer serves: FileService, or
 * during a live migration the layer in front of it that falls back to the
 * old Filetracker (src/migration/live.ts).
 */
export interface Files {
  head(path: string): Promise<FileHead>;
  open(path: string, signal?: AbortSignal): Promise<OpenedFile>;
  /** `session`: the caller's lock session, to take this request's locks in (see FileService). */
  put(req: PutRequest, signal?: AbortSignal, session?: LockSession): Promise<number>;
  delete(
    path: string,
    version: number,
    signal?: AbortSignal,
    session?: LockSession,
  ): Promise<DeleteFileResult>;
  list(dir: string, maxVersion: number): AsyncGenerator<string>;
  /** The temporary folder uploads spill to is usable (for /health). */
  checkTempDir(): Promise<void>;
}

/** Paths per metadata query while listing. */
const LIST_PAGE = 1000;

/**
 * The dedup core: Filetracker operations over a metadata store, a blob store
 * and locks. Knows nothing of HTTP.
 *
 * A PUT: the request's UploadCheck refuses what its headers already show to
 * be wrong; ContentIntake (intake.ts) reads, checks and stores the content;
 * then the metadata changes, here.
 *
 * Locking protocol (see also src/locks/port.ts):
 * - a body is read, and stored, with no lock held: a slow client never blocks anyone;
 * - `blob:<hash>` is taken shared, which only excludes the cleaner (and fsck
 *   --repair): for new content from just before its object becomes visible,
 *   for stored content before its row is confirmed; it is held until the
 *   path points at the blob;
 * - new content becomes visible under `commit:<hash>` exclusive;
 * - then `path:<path>` exclusive for the one metadata transaction.
 * Always in that order (blob, commit, path), so two requests cannot deadlock.
 */
export class FileService implements Files {
  private readonly now: () => number;
  private readonly intake: ContentIntake;

  constructor(private readonly o: FileServiceOptions) {
    this.now = o.now ?? Date.now;
    this.intake = new ContentIntake({
      meta: o.meta,
      blobs: o.blobs,
      keyDepth: o.keyDepth,
      gzipLevel: o.gzipLevel,
      tempDir: o.tempDir,
      spillThreshold: o.spillThreshold,
      lockOptions: (signal) => this.lockOptions(signal),
      metrics: o.metrics,
    });
  }

  private key(hash: string): string {
    return blobKey(hash, this.o.keyDepth);
  }

  private lockOptions(signal?: AbortSignal) {
    return { timeoutMs: this.o.lockTimeoutMs, signal };
  }

  async head(path: string): Promise<FileRecord> {
    const file = await this.o.meta.getFile(path);
    if (!file) throw notFound(`File ${path}`);
    return file;
  }

  async open(path: string, signal?: AbortSignal): Promise<OpenedFile> {
    const file = await this.head(path);
    const reader = await this.o.blobs.get(this.key(file.hash), { signal });
    // A path whose blob is gone breaks invariant 1. It is our fault, not the
    // client's: 500, never 404, and loud in the logs. The blob is marked, so
    // that the next PUT of this content stores it again (see intake.ts).
    if (!reader) {
      this.o.logger.error(
        { path, hash: file.hash },
        'metadata points at a blob that is not in the store',
      );
      await this.o.meta.markDamage(file.hash, 'missing').catch((err: unknown) => {
        this.o.logger.warn({ err, hash: file.hash }, 'could not mark the blob missing');
      });
      throw internal(`Stored content of ${path} is missing from the blob store`);
    }
    if (reader.size !== file.storedSize) {
      // Same content, other gzip bytes: an S3 server that let a concurrent
      // upload overwrite the object. The bytes are still right; serve them
      // with their real length rather than fail the download (fsck repairs the row).
      this.o.logger.warn(
        { path, hash: file.hash, recorded: file.storedSize, actual: reader.size },
        'stored blob size differs from metadata; serving the object as it is',
      );
      return { file: { ...file, storedSize: reader.size }, body: reader.body };
    }
    return { file, body: reader.body };
  }

  /**
   * Stores the body under the path unless a strictly newer version is stored;
   * answers the version stored under the path afterwards. What the headers
   * already show to be wrong or too large is refused before anything else.
   */
  async put(req: PutRequest, signal?: AbortSignal, session?: LockSession): Promise<number> {
    const check = new UploadCheck({
      encoding: req.encoding,
      hints: req.hints,
      verify: this.o.verifyHints,
      maxLogicalSize: this.o.maxUploadSize,
      declaredLength: req.declaredLength,
    });
    // A strictly newer stored version wins whatever the body holds, so it is
    // not read (the protocol layer drains it). Decided again under the lock below.
    const current = await this.o.meta.getFile(req.path);
    if (current && current.version > req.version) return current.version;

    return this.inSession(session, async (session) => {
      const blob = await this.intake.receive(req, check, session, signal);
      // Held to the end of the session, which comes right after the change:
      // ending it releases this lock and the blob's together (one round trip
      // with PostgreSQL locks).
      await session.acquire(`path:${req.path}`, 'exclusive', this.lockOptions(signal));
      const result = await this.o.meta.putFile({
        path: req.path,
        version: req.version,
        blob,
        now: this.now(),
      });
      crashPoint('put.committed');
      return result.version;
    });
  }

  async delete(
    path: string,
    version: number,
    signal?: AbortSignal,
    session?: LockSession,
  ): Promise<DeleteFileResult> {
    const result = await this.inSession(session, (session) =>
      withLock(session, `path:${path}`, 'exclusive', this.lockOptions(signal), () =>
        this.o.meta.deleteFile({ path, version, now: this.now() }),
      ),
    );
    crashPoint('delete.committed');
    if (result.outcome === 'absent') throw notFound(`File ${path}`);
    return result;
  }

  /**
   * A session of its own, or the caller's: live migration holds its
   * `migrate:<path>` lock in one and passes it down, so that a request never
   * needs a second lock connection while holding one (PostgreSQL locks). The
   * caller's session then releases these locks when it ends.
   */
  private inSession<T>(
    given: LockSession | undefined,
    fn: (session: LockSession) => Promise<T>,
  ): Promise<T> {
    return given ? fn(given) : inSession(this.o.locks, fn);
  }

  /** Paths under `dir` ("" = everything) relative to it, sorted, with version <= maxVersion. */
  async *list(dir: string, maxVersion: number): AsyncGenerator<string> {
    const prefix = dir === '' ? '' : `${dir}/`;
    let after: string | null = null;
    for (;;) {
      const page = await this.o.meta.listFiles({ prefix, maxVersion, after, limit: LIST_PAGE });
      for (const path of page) yield path.slice(prefix.length);
      if (page.length < LIST_PAGE) return;
      after = page[page.length - 1] ?? null;
    }
  }

  /** The temporary folder uploads spill to is usable (for /health). */
  checkTempDir(): Promise<void> {
    return this.intake.checkTempDir();
  }
}
