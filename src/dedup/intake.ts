import { PassThrough, type Readable } from 'node:stream';
import type { BlobStore, CommitMode, PutResult } from '../blobstore/port.js';
import { AppError, clientAborted, contentCollected, contentDamaged } from '../errors.js';
import type { Lock, LockOptions, LockSession } from '../locks/port.js';
import type { MetaStore } from '../metastore/port.js';
import { BufferBudget } from '../runtime/buffer-budget.js';
import { crashPoint } from '../runtime/faults.js';
import { checkBuffer, checkStream, readWhole, SMALL_BODY, WHOLE_BODY } from './body-readers.js';
import { blobKey } from './keys.js';
import type { DedupMetrics } from './metrics.js';
import { checkSpillDir, SpillBuffer } from './spill.js';
import type { BodyEncoding, ContentHints, UploadCheck } from './upload-check.js';

export interface IntakeOptions {
  meta: MetaStore;
  blobs: BlobStore;
  keyDepth: number;
  gzipLevel: number;
  tempDir: string;
  spillThreshold: number;
  lockOptions(signal?: AbortSignal): LockOptions;
  /** Dedup hits and misses (/metrics). */
  metrics?: DedupMetrics | undefined;
}

/**
 * Memory for upload bodies over SMALL_BODY (see BufferBudget; bodies up to
 * SMALL_BODY are read whole outside it). With the default SPILL_THRESHOLD,
 * 16 read whole at once (each takes a buffer of min(WHOLE_BODY,
 * SPILL_THRESHOLD) bytes), or the in-memory parts of bodies of unknown hash
 * (SPILL_THRESHOLD each), or a mix. Past it, uploads stream, or spill to
 * their temporary file from the first byte. A SPILL_THRESHOLD above it
 * raises it to that much.
 */
export const WHOLE_BODY_BUDGET = 32 * 1024 * 1024;

/** An upload body, as the protocol layer hands it over. */
export interface UploadBody {
  body: Readable;
  encoding: BodyEncoding;
  hints: ContentHints;
  /** Content-Length when the client sent one. */
  declaredLength?: number | undefined;
}

/** A blob a PUT is about to reference (see MetaStore.putFile). */
export interface BlobFacts {
  hash: string;
  logicalSize: number;
  storedSize: number;
  /** The blob's row existed when the content was reused: putFile must not re-create it. */
  known: boolean;
}

/** How a content not stored yet gets stored, its commit waiting for `beforeCommit`. */
type StoreNew = (beforeCommit: () => Promise<CommitMode | undefined>) => Promise<{
  put: PutResult;
  logicalSize: number;
}>;

/**
 * Turns an upload body into content the metadata may point at: reads it,
 * has its UploadCheck verify it, and stores it unless it is stored already.
 * Every path makes the same decision in one place (place()), and no path
 * changes anything, in the blob store or the metadata, before the body has
 * checked out:
 *
 * - a body of known length up to SPILL_THRESHOLD (at most WHOLE_BODY), while
 *   the whole-body budget has room, and any body up to SMALL_BODY: read into
 *   one buffer, checked in one pass, then the decision is made on the hash
 *   it turned out to have, and a new content is stored from that buffer.
 * - otherwise, when the client named the content (SHA256-Checksum): the
 *   decision comes first. Stored already: the body is only checked, nothing
 *   is uploaded. Not stored: the body streams into the blob store, which
 *   makes the object visible only after the check has passed.
 * - otherwise (no hash): the body is held (memory, then a temporary file
 *   past SPILL_THRESHOLD), checked, and then the decision is made.
 *
 * Returns with `blob:<hash>` held shared in the session: the cleaner cannot
 * remove the content before the path points at it.
 */
export class ContentIntake {
  private readonly wholeBodies: BufferBudget;

  constructor(private readonly o: IntakeOptions) {
    // SPILL_THRESHOLD is the operator's bound on the memory one upload may
    // hold; the budget always has room for at least one such upload.
    this.wholeBodies = new BufferBudget(
      Math.max(WHOLE_BODY_BUDGET, o.spillThreshold),
      Math.min(WHOLE_BODY, o.spillThreshold),
      4,
      (held) => o.metrics?.bodyMemory.set(held),
    );
  }

  async receive(
    upload: UploadBody,
    check: UploadCheck,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    const { declaredLength } = upload;
    if (declaredLength !== undefined && declaredLength <= SMALL_BODY) {
      this.o.metrics?.bodies.inc({ read: 'whole' });
      const body = await readWhole(upload.body, declaredLength, signal);
      return this.receiveWhole(body, check, session, signal);
    }
    const held = declaredLength === undefined ? null : this.wholeBodies.tryTake(declaredLength);
    if (held) {
      this.o.metrics?.bodies.inc({ read: 'whole' });
      let done = false;
      try {
        const body = await readWhole(upload.body, held.buffer.length, signal, held.buffer);
        const facts = await this.receiveWhole(body, check, session, signal);
        done = true;
        return facts;
      } finally {
        // After a failure a request may still be sending the buffer (an S3
        // server can answer before it has read the whole body): not reused.
        held.release(done);
      }
    }
    this.o.metrics?.bodies.inc({ read: 'streamed' });
    return this.receiveStreamed(upload.body, check, session, signal);
  }

  /**
   * A body read into one buffer: checked, then placed. The buffer may be
   * reused once this returns (BufferBudget): nothing may keep it.
   */
  private async receiveWhole(
    body: Buffer,
    check: UploadCheck,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    const checked = await checkBuffer(body, check, this.o.gzipLevel);
    return this.place(checked.id.sha256, session, signal, {
      store: async (beforeCommit) => {
        const bytes = await checked.stored();
        const put = await this.o.blobs.put(this.key(checked.id.sha256), bytes, {
          size: bytes.length,
          beforeCommit,
          signal,
        });
        return { put, logicalSize: checked.id.logicalSize };
      },
    });
  }

  /** A body of unknown or large size, or one the whole-body budget had no room for. */
  private async receiveStreamed(
    body: Readable,
    check: UploadCheck,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    const named = check.knownHash;
    if (named !== undefined) {
      return this.place(named, session, signal, {
        verify: () => checkStream(body, check, null, this.o.gzipLevel, signal),
        store: (beforeCommit) => this.streamInto(named, body, check, beforeCommit, signal),
      });
    }

    // Its memory part comes out of the same budget; with none left, it goes
    // to the temporary file from the first byte.
    const reserved = this.wholeBodies.tryReserve(this.o.spillThreshold);
    const spill = new SpillBuffer(this.o.tempDir, reserved ? this.o.spillThreshold : 0);
    try {
      const { id, storedSize } = await checkStream(body, check, spill, this.o.gzipLevel, signal);
      return await this.place(id.sha256, session, signal, {
        store: async (beforeCommit) => {
          const put = await this.o.blobs.put(this.key(id.sha256), spill.openReader(), {
            size: storedSize,
            beforeCommit,
            signal,
          });
          return { put, logicalSize: id.logicalSize };
        },
      });
    } finally {
      await spill.dispose();
      reserved?.();
    }
  }

  /** The temporary folder uploads spill to is usable (for /health). */
  checkTempDir(): Promise<void> {
    return checkSpillDir(this.o.tempDir);
  }

  /**
   * The one decision: the content is stored already, so reuse it (after
   * `verify` when the body is still unread), or store it with `store`, whose
   * object becomes visible only under the `commit:` lock (see commitGuard()).
   *
   * Content whose object was found missing or corrupt (a GET, fsck) is
   * stored again: under the commit lock, if the row still says so, the
   * object is replaced and the mark cleared before the lock is let go, so
   * every path of that content reads again, and two uploads restoring it at
   * once replace it once. The common dedup hit costs no extra request: the
   * mark comes with the row it reads anyway.
   */
  private async place(
    hash: string,
    session: LockSession,
    signal: AbortSignal | undefined,
    how: { verify?: () => Promise<unknown>; store: StoreNew },
  ): Promise<BlobFacts> {
    const row = await this.o.meta.getBlob(hash);
    if (row && row.damage === null) {
      await how.verify?.();
      crashPoint('put.checked');
      const reused = await this.reuse(hash, session, signal);
      this.o.metrics?.hits.inc();
      return reused;
    }
    const commit = this.commitGuard(hash, session, signal);
    let stored: Awaited<ReturnType<StoreNew>>;
    let restoring = false;
    let pinned = false;
    try {
      stored = await how.store(async () => {
        crashPoint('put.checked');
        // Pinned before it exists: from its creation until a path points at
        // it, a new object has no row, and the cleaner must not take it for
        // an orphan (it takes this lock exclusively to delete).
        await session.acquire(`blob:${hash}`, 'shared', this.o.lockOptions(signal));
        pinned = true;
        await commit.acquire();
        if (row === null) return undefined;
        restoring = (await this.o.meta.getBlob(hash))?.damage != null;
        return restoring ? 'replace' : undefined;
      });
      if (restoring) crashPoint('put.object-restored');
      if (restoring && !(await this.o.meta.markRestored(hash, stored.put.size))) {
        throw contentCollected(hash);
      }
      crashPoint('put.object-stored');
    } finally {
      await commit.release();
    }
    const adopted = await this.adopt(
      hash,
      stored.logicalSize,
      stored.put,
      row !== null,
      pinned,
      session,
      signal,
    );
    this.o.metrics?.misses.inc();
    return adopted;
  }

  /**
   * Streams a body whose content the client named straight into the blob
   * store under that name; the check must pass (the body really is that
   * content) before the store's commit makes the object visible.
   */
  private async streamInto(
    hash: string,
    body: Readable,
    check: UploadCheck,
    beforeCommit: () => Promise<CommitMode | undefined>,
    signal?: AbortSignal,
  ): Promise<{ put: PutResult; logicalSize: number }> {
    const pass = new PassThrough({ highWaterMark: 64 * 1024 });
    const checking = checkStream(body, check, pass, this.o.gzipLevel, signal);
    const storing = this.o.blobs.put(this.key(hash), pass, {
      beforeCommit: () => checking.then(beforeCommit),
      signal,
    });
    // A store that fails before reading would otherwise leave the body stalled on a full buffer.
    storing.catch((err: Error) => pass.destroy(err));
    const [checked, put] = await settleBoth(checking, storing, signal);
    return { put, logicalSize: checked.id.logicalSize };
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
        lock = await session.acquire(`commit:${hash}`, 'exclusive', this.o.lockOptions(signal));
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
    await session.acquire(`blob:${hash}`, 'shared', this.o.lockOptions(signal));
    const row = await this.o.meta.getBlob(hash);
    if (!row) throw contentCollected(hash);
    // Found damaged while we read the body (by a GET or fsck): pointing a path
    // at it would serve nothing; the retry stores the content again.
    if (row.damage !== null) throw contentDamaged(hash);
    return { hash, logicalSize: row.logicalSize, storedSize: row.storedSize, known: true };
  }

  /**
   * We stored (or found) the object under the hash's key, pinned (`blob:`
   * shared) from before the commit: it stays until a path points at it.
   * `known`: the blob had a row (its object was restored).
   */
  private async adopt(
    hash: string,
    logicalSize: number,
    put: PutResult,
    known: boolean,
    pinned: boolean,
    session: LockSession,
    signal?: AbortSignal,
  ): Promise<BlobFacts> {
    if (!pinned) await session.acquire(`blob:${hash}`, 'shared', this.o.lockOptions(signal));
    let storedSize = put.size;
    if (!put.created) {
      // Someone else's object (a concurrent upload, or one left by a crash).
      // Objects are never overwritten, so its size, not ours, is the truth;
      // and under the lock the cleaner cannot remove it before we reference it.
      const info = await this.o.blobs.stat(this.key(hash), { signal });
      if (!info) throw contentCollected(hash);
      storedSize = info.size;
    }
    return { hash, logicalSize, storedSize, known };
  }

  private key(hash: string): string {
    return blobKey(hash, this.o.keyDepth);
  }
}

/**
 * Waits for the checking and the storing side of a streamed upload. When one
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
  // The check's AppErrors (bad gzip, mismatch, too large) come first;
  // a store failure (503) next; a bare stream error last.
  const rank = (e: unknown) => {
    if (!(e instanceof AppError)) return 2;
    return e.code === 'BACKEND_UNAVAILABLE' || e.code === 'INTERNAL' ? 1 : 0;
  };
  errors.sort((x, y) => rank(x) - rank(y));
  throw errors[0];
}
