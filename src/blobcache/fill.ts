import { type FileHandle, rm } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { ContentCheck } from './verify.js';

/** What a fill that checked out produced: the entry's facts, its bytes in `path`. */
export interface FilledEntry {
  hash: string;
  size: number;
  path: string;
}

/**
 * The store's bytes are written and checked in batches of this many: an
 * object store's socket delivers 16-64 KiB at a time, and a file write and
 * an inflate per such chunk, each a thread-pool round trip, cost more than
 * the work itself.
 */
const FILL_BATCH = 1024 * 1024;

/**
 * Passes a blob's stored bytes from the object store to the client
 * unchanged and, on the side, writes them into a fill file while checking
 * them (ContentCheck: one whole gzip stream of the content the key names,
 * exactly `size` bytes). Each chunk goes to the client before the side work
 * starts, so the first reader waits for nothing. The side work goes by
 * batches of FILL_BATCH bytes, and the next chunk is taken once a batch has
 * been written and checked, so the slowest of client, disk and inflater
 * paces the download, and memory stays about a batch whatever the size.
 *
 * The fill never fails the download: a disk error or bytes that do not check
 * out only abandon the fill (the client gets what the store sent, as it would
 * without a cache). `done` resolves with the checked entry (its fill file
 * closed, to be renamed into place), or null when the fill was abandoned,
 * cut off (client gone, store failed) or did not check out; the fill file is
 * then removed.
 */
export class CacheFill extends Transform {
  readonly done: Promise<FilledEntry | null>;
  private settle!: (entry: FilledEntry | null) => void;
  private readonly check: ContentCheck;
  private received = 0;
  private batch: Buffer[] = [];
  private batchBytes = 0;
  private failure: string | null = null;
  private discarded = false;

  constructor(
    private readonly hash: string,
    private readonly size: number,
    private readonly path: string,
    private readonly file: FileHandle,
    private readonly onAbandon: (reason: string) => void,
  ) {
    super();
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
    this.check = new ContentCheck(hash);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.push(chunk);
    if (this.failure === null) {
      this.received += chunk.length;
      if (this.received > this.size) this.fail(`more than the ${this.size} bytes announced`);
    }
    if (this.failure !== null) {
      callback();
      return;
    }
    this.batch.push(chunk);
    this.batchBytes += chunk.length;
    if (this.batchBytes < FILL_BATCH) callback();
    else this.writeBatch().then(() => callback());
  }

  override _flush(callback: TransformCallback): void {
    // The client has every byte; checking and closing the fill delays nothing of its answer.
    callback();
    this.finish().then(this.settle, (err: Error) => {
      this.fail(err.message);
      void this.discard();
    });
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // Cut off before the end (client gone, object store failed): no entry.
    if (!this.writableFinished) {
      this.fail(err ? `cut off: ${err.message}` : 'cut off');
      void this.discard();
    }
    callback(err);
  }

  /** Writes and checks the batch; a failure abandons the fill (never the download). */
  private async writeBatch(): Promise<void> {
    const chunks = this.batch;
    const bytes = this.batchBytes;
    this.batch = [];
    this.batchBytes = 0;
    if (bytes === 0 || this.failure !== null) return;
    try {
      const [written] = await Promise.all([
        this.file.writev(chunks),
        // One piece per batch: the inflater's round trips go by batch, not by socket read.
        this.check.write(
          chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, bytes),
        ),
      ]);
      if (written.bytesWritten !== bytes) {
        throw new Error(`short write (${written.bytesWritten} of ${bytes} bytes)`);
      }
    } catch (err) {
      this.fail(`writing the cache file: ${(err as Error).message}`);
    }
  }

  private async finish(): Promise<FilledEntry | null> {
    if (this.failure === null) await this.writeBatch();
    if (this.failure === null && this.received !== this.size) {
      this.fail(`${this.received} bytes received of the ${this.size} announced`);
    }
    if (this.failure === null) {
      const wrong = await this.check.finish();
      if (wrong !== null) this.fail(wrong);
    }
    if (this.failure !== null) {
      await this.discard();
      return null;
    }
    // Counted as the disk's failure (see kindOf() in store.ts), not as bytes that did not check out.
    await this.file.close().catch((err: Error) => {
      throw new Error(`writing the cache file: ${err.message}`);
    });
    return { hash: this.hash, size: this.size, path: this.path };
  }

  private fail(reason: string): void {
    if (this.failure !== null) return;
    this.failure = reason;
    this.onAbandon(reason);
  }

  /** Closes and removes the fill file; settles `done` with null. Once. */
  private async discard(): Promise<void> {
    if (this.discarded) return;
    this.discarded = true;
    this.check.destroy();
    await this.file.close().catch(() => {});
    await rm(this.path, { force: true }).catch(() => {});
    this.settle(null);
  }
}

/** What a WholeFill ended with: every byte announced, or why not (as CacheFill words it). */
export type WholeFillResult = { bytes: Buffer } | { reason: string };

/**
 * For an object small enough to hold whole (up to WHOLE_FILL bytes in
 * store.ts): passes the bytes to the client and copies them, on the side,
 * into `into` (a reused buffer of exactly `size` bytes) or, without one,
 * keeps references to them. `done` resolves with all the bytes once the body
 * has ended with exactly `size` of them, or with why not (cut off, or another
 * length than announced). The caller then checks them in one synchronous
 * inflate and writes them in one call: the streamed CacheFill's inflater and
 * batch writes hand every piece between the thread pool and the main thread
 * (see docs/benchmarks.md, notes of 2026-12-02, third session).
 */
export class WholeFill extends Transform {
  readonly done: Promise<WholeFillResult>;
  private settle!: (result: WholeFillResult) => void;
  private chunks: Buffer[] = [];
  private received = 0;

  constructor(
    private readonly size: number,
    private readonly into?: Buffer,
  ) {
    super();
    this.done = new Promise((resolve) => {
      this.settle = resolve;
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    const at = this.received;
    this.received += chunk.length;
    if (this.received <= this.size) {
      if (this.into) chunk.copy(this.into, at);
      else this.chunks.push(chunk);
    }
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    callback();
    if (this.received > this.size) {
      this.settle({ reason: `more than the ${this.size} bytes announced` });
    } else if (this.received < this.size) {
      this.settle({ reason: `${this.received} bytes received of the ${this.size} announced` });
    } else this.settle({ bytes: this.into ?? Buffer.concat(this.chunks, this.size) });
    this.chunks = [];
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    // Cut off before the end (client gone, object store failed).
    if (!this.writableFinished)
      this.settle({ reason: err ? `cut off: ${err.message}` : 'cut off' });
    this.chunks = [];
    callback(err);
  }
}
