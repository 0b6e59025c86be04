import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { gunzipEach } from '../dedup/sync-gunzip.js';

/** Inflated only to be hashed and dropped: a few pieces of this size per check in memory. */
const VERIFY_CHUNK = 256 * 1024;
/** Read size when checking an entry's file. */
const READ_CHUNK = 1024 * 1024;
/**
 * checkBytes() inflates at most this much on the event loop (about 3 ms,
 * hash included, for incompressible content, up to about 10 ms for dense
 * text), as uploads do (SYNC_INFLATE in body-readers.ts); larger content is
 * checked on the thread pool.
 */
const SYNC_INFLATE_MAX = 2 * 1024 * 1024;

/**
 * Checks stored bytes, given piece by piece, against the content hash their
 * key names: inflated, they must be one whole gzip stream (nothing after it)
 * whose content hashes to `hash`. Inflating runs on the thread pool; the
 * caller waits for write() before giving the next piece, so memory stays a
 * piece or two.
 */
export class ContentCheck {
  private readonly gunzip = createGunzip({ chunkSize: VERIFY_CHUNK });
  private readonly sha = createHash('sha256');
  private received = 0;
  private error: Error | null = null;
  /** Resolves a write waiting for the inflater to drain, should it fail instead. */
  private drained: (() => void) | null = null;

  constructor(private readonly hash: string) {
    this.gunzip.on('data', (chunk: Buffer) => this.sha.update(chunk));
    this.gunzip.on('error', (err: Error) => {
      this.error = err;
      this.drained?.();
    });
  }

  write(bytes: Buffer): Promise<void> {
    this.received += bytes.length;
    if (this.error || this.gunzip.write(bytes)) return Promise.resolve();
    return new Promise((resolve) => {
      this.drained = () => {
        this.drained = null;
        resolve();
      };
      this.gunzip.once('drain', this.drained);
    });
  }

  /** Null when the bytes were that content, else what was wrong with them. */
  async finish(): Promise<string | null> {
    if (!this.error) {
      this.gunzip.end();
      await finished(this.gunzip).catch((err: Error) => {
        this.error ??= err;
      });
    }
    if (this.error) return `not a valid gzip stream: ${this.error.message}`;
    if (this.gunzip.bytesWritten < this.received) return 'trailing data after the gzip stream';
    if (this.sha.digest('hex') !== this.hash) return 'content does not hash to its key';
    return null;
  }

  destroy(): void {
    this.gunzip.destroy();
  }
}

/** Checks the first `size` bytes of `file` against `hash` (see ContentCheck); null when they are right. */
export async function checkFile(
  file: FileHandle,
  size: number,
  hash: string,
): Promise<string | null> {
  const check = new ContentCheck(hash);
  try {
    let done = 0;
    while (done < size) {
      // A fresh buffer each time: the inflater may still hold the previous one.
      const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, size - done));
      const { bytesRead } = await file.read(buffer, 0, buffer.length, done);
      if (bytesRead === 0) return `${done} bytes of ${size}`;
      await check.write(buffer.subarray(0, bytesRead));
      done += bytesRead;
    }
    return await check.finish();
  } finally {
    check.destroy();
  }
}

/**
 * checkFile() for an object already in memory (up to a few MiB): null when
 * right, else what is wrong. Inflated on the event loop when its content is
 * at most SYNC_INFLATE_MAX, else on the thread pool. The gzip trailer's size
 * field tells which before inflating: it is only a hint (a lying one costs
 * the wasted synchronous part, never a wrong answer).
 */
export async function checkBytes(bytes: Buffer, hash: string): Promise<string | null> {
  // ISIZE: the last member's content size, modulo 2^32.
  const hinted = bytes.length >= 18 ? bytes.readUInt32LE(bytes.length - 4) : 0;
  let inflated: ReturnType<typeof gunzipEach> = null;
  const digest = createHash('sha256');
  if (hinted <= SYNC_INFLATE_MAX) {
    try {
      inflated = gunzipEach(bytes, SYNC_INFLATE_MAX, (piece) => digest.update(piece));
    } catch (err) {
      return `not a valid gzip stream: ${(err as Error).message}`;
    }
  }
  if (inflated === null) {
    const check = new ContentCheck(hash);
    try {
      await check.write(bytes);
      return await check.finish();
    } finally {
      check.destroy();
    }
  }
  if (inflated.consumed < bytes.length) return 'trailing data after the gzip stream';
  if (digest.digest('hex') !== hash) {
    return 'content does not hash to its key';
  }
  return null;
}
