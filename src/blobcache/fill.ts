import { createHash } from 'node:crypto';
import { type FileHandle, rm } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { finished } from 'node:stream/promises';
import { crc32, createGunzip, type Gunzip } from 'node:zlib';

/** What a fill that checked out produced: the entry's facts, its bytes in `path`. */
export interface FilledEntry {
  hash: string;
  size: number;
  crc: number;
  path: string;
}

/** Inflated only to be hashed and dropped: small pieces keep memory per fill low. */
const VERIFY_CHUNK = 64 * 1024;

/**
 * Passes a blob's stored bytes from the object store to the client
 * unchanged and, on the side, writes them into a fill file while checking
 * them: inflated, they must hash to the blob's SHA-256, end where the gzip
 * stream ends, and be exactly `size` bytes. Each chunk goes to the client
 * before the side work starts, so the first reader waits for nothing; the
 * next chunk is taken once the side work has caught up, so the slowest of
 * client, disk and inflater paces the download, and memory stays a chunk or
 * two whatever the size.
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
  private readonly gunzip: Gunzip;
  private readonly sha = createHash('sha256');
  private crc = 0;
  private received = 0;
  private failure: string | null = null;
  private inflateError: Error | null = null;
  /** Resolves a write waiting for the inflater to drain, should it fail instead. */
  private drained: (() => void) | null = null;
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
    this.gunzip = createGunzip({ chunkSize: VERIFY_CHUNK });
    this.gunzip.on('data', (chunk: Buffer) => this.sha.update(chunk));
    this.gunzip.on('error', (err: Error) => {
      this.inflateError = err;
      this.drained?.();
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.push(chunk);
    if (this.failure !== null) {
      callback();
      return;
    }
    this.received += chunk.length;
    this.crc = crc32(chunk, this.crc);
    if (this.received > this.size) this.fail(`more than the ${this.size} bytes announced`);
    if (this.failure !== null) {
      callback();
      return;
    }
    Promise.all([this.file.write(chunk), this.inflate(chunk)]).then(
      () => callback(),
      (err: Error) => {
        this.fail(`writing the cache file: ${err.message}`);
        callback();
      },
    );
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

  private inflate(chunk: Buffer): Promise<void> {
    if (this.inflateError || this.gunzip.write(chunk)) return Promise.resolve();
    return new Promise((resolve) => {
      this.drained = () => {
        this.drained = null;
        resolve();
      };
      this.gunzip.once('drain', this.drained);
    });
  }

  private async finish(): Promise<FilledEntry | null> {
    if (this.failure === null && this.received !== this.size) {
      this.fail(`${this.received} bytes received of the ${this.size} announced`);
    }
    if (this.failure === null) await this.endInflate();
    if (this.failure === null && this.inflateError) {
      this.fail(`not a valid gzip stream: ${this.inflateError.message}`);
    }
    if (this.failure === null && this.gunzip.bytesWritten < this.received) {
      this.fail('trailing data after the gzip stream');
    }
    if (this.failure === null && this.sha.digest('hex') !== this.hash) {
      this.fail('content does not hash to its key');
    }
    if (this.failure !== null) {
      await this.discard();
      return null;
    }
    await this.file.close();
    return { hash: this.hash, size: this.size, crc: this.crc >>> 0, path: this.path };
  }

  private async endInflate(): Promise<void> {
    if (this.inflateError) return;
    this.gunzip.end();
    await finished(this.gunzip).catch((err: Error) => {
      this.inflateError ??= err;
    });
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
    this.gunzip.destroy();
    await this.file.close().catch(() => {});
    await rm(this.path, { force: true }).catch(() => {});
    this.settle(null);
  }
}
