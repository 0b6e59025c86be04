import { PassThrough, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { BlobStore } from '../blobstore/port.js';
import {
  AppError,
  clientAborted,
  contentCollected,
  internal,
  invalidHeader,
  notFound,
  tooLarge,
} from '../errors.js';
import {
  inSession,
  type Lock,
  type LockManager,
  type LockSession,
  withLock,
} from '../locks/port.js';
import type { DeleteFileResult, FileRecord, MetaStore } from '../metastore/port.js';
import {
  type BodyEncoding,
  type ContentHints,
  type IngestSpec,
  ingest,
  type Measured,
  measureBuffer,
  readWhole,
  SMALL_BODY,
} from './ingest.js';
import { blobKey, SHA256_HEX } from './keys.js';
import { SpillBuffer } from './spill.js';

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
}

export interface PutRequest {
  path: string;
  version: number;
  body: Readable;
  encoding: BodyEncoding;
  hints: ContentHints;
  /** Content-Length when the client sent one. */
  declaredLength?: number | undefined;
}

export interface PutOutcome {
  /** The version stored under the path after the request. */
  version: number;
  /** False when the stored version was newer and the body was not read. */
  bodyRead: boolean;
}

export interface OpenedFile {
  file: FileRecord;
  /** The stored gzip bytes (a Buffer for small objects the store read whole). */
  body: Readable | Buffer;
}

/** Paths per metadata query while listing. */
const LIST_PAGE = 1000;

/**
 * The dedup core: Filetracker operations over a metadata store, a blob store
 * and locks. Knows nothing of HTTP.
 *
 * Locking protocol (see also src/locks/port.ts):
 * - a body is read and stored with no lock held: a slow client never blocks anyone;
 * - then `blob:<hash>` is taken shared, which only excludes the cleaner, and
 *   under it the blob is confirmed to exist before any path points at it;
 * - then `path:<path>` exclusive for the one metadata transaction.
 * Always in that order (blob, then path), so two requests cannot deadlock.
 */
export class FileService {
  private readonly now: () => number;

  constructor(private readonly o: FileServiceOptions) {
    this.now = o.now ?? Date.now;
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
    // client's: 500, never 404, and loud in the logs.
    if (!reader) {
      this.o.logger.error(
        { path, hash: file.hash },
        'metadata points at a blob that is not in the store',
      );
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

  async put(req: PutRequest, signal?: AbortSignal): Promise<PutOutcome> {
    const { hints } = req;
    if (hints.sha256 !== undefined && !SHA256_HEX.test(hints.sha256)) {
      throw invalidHeader('SHA256-Checksum', 'expected 64 hexadecimal digits');
    }
    // Refuse what is certainly too large before reading a byte of it.
    if (hints.logicalSize !== undefined && hints.logicalSize > this.o.maxUploadSize)
      throw tooLarge(this.o.maxUploadSize);
    if (req.encoding === 'identity' && (req.declaredLength ?? 0) > this.o.maxUploadSize) {
      throw tooLarge(this.o.maxUploadSize);
    }

    // A strictly newer stored version wins whatever the body holds, so skip it.
    // The answer is still decided under the lock below when we go on.
    const current = await this.o.meta.getFile(req.path);
    if (current && current.version > req.version)
      return { version: current.version, bodyRead: false };

    return inSession(this.o.locks, async (session) => {
      const blob = await this.storeContent(req, session, signal);
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
      return { version: result.version, bodyRead: true };
    });
  }

  async delete(path: string, version: number, signal?: AbortSignal): Promise<DeleteFileResult> {
    const result = await inSession(this.o.locks, (session) =>
      withLock(session, `path:${path}`, 'exclusive', this.lockOptions(signal), () =>
        this.o.meta.deleteFile({ path, version, now: this.now() }),
      ),
    );
    if (result.outcome === 'absent') throw notFound(`File ${path}`);
    return result;
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

  /**
   * Reads the body and makes sure its content is in the blob store. Returns
   * the blob's facts with `blob:<hash>` held shared in `session`.
   */
  private async storeContent(
    req: PutRequest,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    const spec: IngestSpec = {
      encoding: req.encoding,
      hints: req.hints,
      verify: this.o.verifyHints,
      maxLogicalSize: this.o.maxUploadSize,
      gzipLevel: this.o.gzipLevel,
    };
    if (req.declaredLength !== undefined && req.declaredLength <= SMALL_BODY) {
      return this.storeSmall(req, req.declaredLength, spec, session, signal);
    }
    const declared = req.hints.sha256;

    if (declared !== undefined) {
      const existing = await this.o.meta.getBlob(declared);
      if (existing) {
        // Already stored: read the body only to check it (or not at all when
        // trusting the client), and upload nothing.
        if (existing.refcount === 0) await this.o.meta.touchBlob(declared, this.now());
        await ingest(req.body, spec, null, signal);
        return this.reuse(declared, session, signal);
      }
      // Not stored yet and the hash is known: stream straight into the blob
      // store; the checksum is verified before the blob becomes visible.
      const pass = new PassThrough({ highWaterMark: 64 * 1024 });
      const measuring = ingest(req.body, spec, pass, signal);
      const commit = this.commitGuard(declared, session, signal);
      const storing = this.o.blobs.put(this.key(declared), pass, {
        beforeCommit: () => measuring.then(commit.acquire),
        signal,
      });
      // A store that fails before reading would otherwise leave the body stalled on a full buffer.
      storing.catch((err: Error) => pass.destroy(err));
      let outcome: [Measured, { created: boolean }];
      try {
        outcome = await settleBoth(measuring, storing, signal);
      } finally {
        await commit.release();
      }
      return this.adopt(outcome[0], outcome[1].created, session, signal);
    }

    // Hash unknown until the end: hold the bytes (memory, then a temp file).
    const spill = new SpillBuffer(this.o.tempDir, this.o.spillThreshold);
    try {
      const measured = await ingest(req.body, spec, spill, signal);
      return await this.storeChecked(
        measured,
        async () => ({ body: spill.openReader(), size: measured.storedSize }),
        session,
        signal,
      );
    } finally {
      await spill.dispose();
    }
  }

  /**
   * storeContent() for a body of at most SMALL_BODY bytes: read whole, checked
   * in memory, and stored from one buffer. Same order as the streaming paths:
   * nothing is stored unless the body checks out, nothing is uploaded when
   * the content is already stored.
   */
  private async storeSmall(
    req: PutRequest,
    length: number,
    spec: IngestSpec,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    const measured = await measureBuffer(await readWhole(req.body, length, signal), spec);
    return this.storeChecked(
      measured,
      async () => {
        const bytes = await measured.stored();
        return { body: bytes, size: bytes.length };
      },
      session,
      signal,
    );
  }

  /**
   * The body checked out and its hash is known: reuse the stored content, or
   * store the bytes `content` gives (asked for only then) under the content's
   * key and pin the blob.
   */
  private async storeChecked(
    measured: { sha256: string; logicalSize: number },
    content: () => Promise<{ body: Readable | Buffer; size: number }>,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    const hash = measured.sha256;
    const existing = await this.o.meta.getBlob(hash);
    if (existing) {
      if (existing.refcount === 0) await this.o.meta.touchBlob(hash, this.now());
      return this.reuse(hash, session, signal);
    }
    const { body, size } = await content();
    const commit = this.commitGuard(hash, session, signal);
    let created: boolean;
    try {
      const stored = await this.o.blobs.put(this.key(hash), body, {
        size,
        beforeCommit: commit.acquire,
        signal,
      });
      created = stored.created;
    } finally {
      await commit.release();
    }
    return this.adopt({ ...measured, storedSize: size }, created, session, signal);
  }

  /**
   * Serializes the moment a new blob becomes visible, per content, across
   * uploads and (with PostgreSQL locks) instances. A store whose create-if-
   * absent is a check-then-act (S3 multipart on servers that ignore
   * If-None-Match) relies on it so two uploads of one content cannot both create.
   */
  private commitGuard(hash: string, session: LockSession, signal?: AbortSignal) {
    let lock: Lock | undefined;
    return {
      acquire: async () => {
        lock = await session.acquire(`commit:${hash}`, 'exclusive', this.lockOptions(signal));
      },
      release: async () => {
        await lock?.release();
      },
    };
  }

  /** The content is already stored: pin it and confirm its row survived while we read the body. */
  private async reuse(
    hash: string,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    await session.acquire(`blob:${hash}`, 'shared', this.lockOptions(signal));
    const row = await this.o.meta.getBlob(hash);
    if (!row) throw contentCollected(hash);
    return { hash, logicalSize: row.logicalSize, storedSize: row.storedSize, known: true };
  }

  /** We stored (or found) the object under the hash's key: pin it before a path points at it. */
  private async adopt(
    measured: Measured,
    created: boolean,
    session: LockSession,
    signal?: AbortSignal,
  ) {
    const hash = measured.sha256;
    await session.acquire(`blob:${hash}`, 'shared', this.lockOptions(signal));
    let storedSize = measured.storedSize;
    if (!created) {
      // Someone else's object (a concurrent upload, or one left by a crash).
      // Objects are never overwritten, so its size, not ours, is the truth;
      // and under the lock the cleaner cannot remove it before we reference it.
      const info = await this.o.blobs.stat(this.key(hash), { signal });
      if (!info) throw contentCollected(hash);
      storedSize = info.size;
    }
    return { hash, logicalSize: measured.logicalSize, storedSize, known: false };
  }
}

/** A blob a PUT is about to reference (see MetaStore.putFile). */
type BlobFacts = { hash: string; logicalSize: number; storedSize: number; known: boolean };

/**
 * Waits for the measuring and the storing side of a streamed upload. When one
 * fails the other fails too (they share a stream); report the cause, not the echo.
 */
async function settleBoth<A, B>(
  a: Promise<A>,
  b: Promise<B>,
  signal?: AbortSignal,
): Promise<[A, B]> {
  const [ra, rb] = await Promise.allSettled([a, b]);
  if (ra.status === 'fulfilled' && rb.status === 'fulfilled') return [ra.value, rb.value];
  if (signal?.aborted) throw clientAborted();
  const errors = [ra, rb].flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  // The measuring side's AppErrors (bad gzip, mismatch, too large) come first;
  // a store failure (503) next; a bare stream error last.
  const rank = (e: unknown) => {
    if (!(e instanceof AppError)) return 2;
    return e.code === 'BACKEND_UNAVAILABLE' || e.code === 'INTERNAL' ? 1 : 0;
  };
  errors.sort((x, y) => rank(x) - rank(y));
  throw errors[0];
}
