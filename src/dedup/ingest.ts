import { createHash, type Hash } from 'node:crypto';
import { type Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip, createGzip, type Gunzip, gunzipSync, gzip } from 'node:zlib';
import {
  AppError,
  checksumMismatch,
  clientAborted,
  invalidGzip,
  sizeMismatch,
  tooLarge,
} from '../errors.js';

/** zlib's 16 KiB default chunk halves compression speed; 256 KiB measured about twice as fast here. */
const ZLIB_CHUNK = 256 * 1024;
/**
 * Inflating only to verify, output chunks are hashed and dropped at once;
 * 64 KiB keeps inflate at full speed while each concurrent upload holds less.
 */
const VERIFY_CHUNK = 64 * 1024;

export type BodyEncoding = 'gzip' | 'identity';

/**
 * The most stored (gzip) bytes an upload within `maxLogicalSize` can have:
 * gzip of incompressible data is slightly larger than the data; anything far
 * beyond that is not a legitimate upload.
 */
export function maxStoredSize(maxLogicalSize: number): number {
  return maxLogicalSize + Math.ceil(maxLogicalSize / 100) + 65536;
}

export interface ContentHints {
  /** SHA256-Checksum: hex SHA-256 of the uncompressed content. */
  sha256?: string | undefined;
  /** Logical-Size: uncompressed byte count. */
  logicalSize?: number | undefined;
}

export interface IngestSpec {
  encoding: BodyEncoding;
  hints: ContentHints;
  /** false with TRUST_CLIENT_CHECKSUMS=true: hints are taken as they are. */
  verify: boolean;
  maxLogicalSize: number;
  gzipLevel: number;
}

export interface Measured {
  sha256: string;
  logicalSize: number;
  /** Bytes written to the sink: the gzip bytes that get stored. */
  storedSize: number;
}

/**
 * Reads an upload body to its end, measuring the uncompressed content (SHA-256,
 * size) and writing the bytes to store — always gzip — into `sink`:
 * the client's own gzip bytes when it sent gzip, or our compression of a raw
 * body. With `sink === null` nothing is kept (the content is already stored and
 * only needs checking). Enforces MAX_UPLOAD_SIZE on the uncompressed bytes as
 * they flow, so a gzip bomb is cut off, and rejects bodies whose content does
 * not match the client's hints. Memory use is a few zlib buffers, whatever the size.
 */
export async function ingest(
  body: Readable,
  spec: IngestSpec,
  sink: Writable | null,
  signal?: AbortSignal,
): Promise<Measured> {
  const { sha256: expectedHash, logicalSize: expectedSize } = spec.hints;
  const meter = new ContentMeter(spec.maxLogicalSize, spec.verify ? expectedSize : undefined);
  const stored = new ByteCounter(maxStoredSize(spec.maxLogicalSize), spec.maxLogicalSize);
  const out = sink ?? new Discard();
  let gunzip: Gunzip | undefined;

  try {
    if (spec.encoding === 'identity') {
      if (sink)
        await pipeline(
          [body, meter, createGzip({ level: spec.gzipLevel, chunkSize: ZLIB_CHUNK }), stored, sink],
          opts(signal),
        );
      else await pipeline([body, meter, new Discard()], opts(signal));
    } else if (!spec.verify && expectedHash !== undefined && expectedSize !== undefined) {
      // Trusted hints: store the bytes without inflating them.
      await pipeline([body, stored, out], opts(signal));
      return { sha256: expectedHash, logicalSize: expectedSize, storedSize: stored.count };
    } else {
      gunzip = createGunzip({ chunkSize: VERIFY_CHUNK });
      if (sink) {
        const branch = pipeline([gunzip, meter, new Discard()]);
        await pipeline([body, stored, new Tee(gunzip, branch), sink], opts(signal));
      } else {
        await pipeline([body, stored, gunzip, meter, new Discard()], opts(signal));
      }
    }
  } catch (err) {
    throw classify(err, spec.encoding, signal);
  }

  if (gunzip) checkGzipComplete(gunzip, stored.count);
  const measured: Measured = {
    sha256: meter.digest(),
    logicalSize: meter.count,
    storedSize: stored.count,
  };
  if (spec.verify) {
    if (expectedSize !== undefined && expectedSize !== measured.logicalSize) {
      throw sizeMismatch(expectedSize, String(measured.logicalSize));
    }
    if (expectedHash !== undefined && expectedHash !== measured.sha256) {
      throw checksumMismatch(expectedHash, measured.sha256);
    }
  }
  return measured;
}

/**
 * Uploads whose Content-Length is at most this many bytes are read whole and
 * checked with measureBuffer() instead of a stream pipeline. Small files are
 * most of a contest platform's traffic (sources, test inputs, outputs), and
 * for them the pipeline's fixed cost per request (half a dozen streams, an
 * AbortController and its DOMException, one thread-pool round trip per
 * chunk) was most of the CPU a PUT took. 64 KiB is one socket read's worth,
 * so memory per upload in flight stays what the streaming path holds.
 */
export const SMALL_BODY = 64 * 1024;

const gzipAsync = promisify(gzip);

/** Reads a body of `length` announced bytes into one buffer. */
export function readWhole(body: Readable, length: number, signal?: AbortSignal): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    // Gone before we got here (its error event has passed): nothing more will come.
    if (body.destroyed || signal?.aborted) {
      reject(clientAborted());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (err: unknown) => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
      body.off('close', onClose);
      if (err === null) resolve(Buffer.concat(chunks, size));
      else reject(err);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      chunks.push(chunk);
    };
    const onEnd = () => {
      // Node's HTTP parser delivers exactly Content-Length bytes; anything else
      // means the body did not come from it whole.
      settle(size === length ? null : clientAborted());
    };
    const onError = (err: unknown) => settle(classify(err, 'identity', signal));
    const onClose = () => settle(clientAborted());
    body.on('data', onData);
    body.once('end', onEnd);
    body.once('error', onError);
    body.once('close', onClose);
  });
}

/** What measureBuffer() found, and how to get the bytes to store. */
export interface MeasuredBuffer {
  sha256: string;
  logicalSize: number;
  /** The gzip bytes to store: the client's own, or our compression of a raw body (made on demand). */
  stored(): Promise<Buffer>;
}

/**
 * ingest() for a body already in memory, with the same checks in the same
 * order and the same errors: limits, declared size, gzip validity (no
 * trailing bytes), checksum. Inflated bytes are hashed as zlib produces them
 * and never kept, so a small gzip bomb is cut off at the limit here too.
 */
export async function measureBuffer(body: Buffer, spec: IngestSpec): Promise<MeasuredBuffer> {
  const { sha256: expectedHash, logicalSize: expectedSize } = spec.hints;
  const declared = spec.verify ? expectedSize : undefined;
  let measured: { sha256: string; logicalSize: number };
  let stored: () => Promise<Buffer>;
  if (spec.encoding === 'identity') {
    if (body.length > spec.maxLogicalSize) throw tooLarge(spec.maxLogicalSize);
    if (declared !== undefined && body.length > declared)
      throw sizeMismatch(declared, `more than ${declared}`);
    measured = { sha256: sha256Hex(body), logicalSize: body.length };
    stored = () => gzipAsync(body, { level: spec.gzipLevel });
  } else {
    if (body.length > maxStoredSize(spec.maxLogicalSize)) throw tooLarge(spec.maxLogicalSize);
    stored = async () => body;
    if (!spec.verify && expectedHash !== undefined && expectedSize !== undefined) {
      return { sha256: expectedHash, logicalSize: expectedSize, stored };
    }
    measured =
      inflateSmall(body, spec.maxLogicalSize, declared) ??
      (await inflateAndHash(body, spec.maxLogicalSize, declared));
  }
  if (spec.verify) {
    if (expectedSize !== undefined && expectedSize !== measured.logicalSize) {
      throw sizeMismatch(expectedSize, String(measured.logicalSize));
    }
    if (expectedHash !== undefined && expectedHash !== measured.sha256) {
      throw checksumMismatch(expectedHash, measured.sha256);
    }
  }
  return { ...measured, stored };
}

function sha256Hex(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Content up to this size is inflated in one synchronous call: for the few
 * KiB of a typical file that takes microseconds, far less than setting up an
 * asynchronous zlib stream, and even the largest blocks the event loop for
 * well under a millisecond.
 */
const SYNC_INFLATE = 256 * 1024;

/**
 * Inflates `body` synchronously when its content is small; null when it
 * turns out larger than SYNC_INFLATE (and no limit was crossed), for
 * inflateAndHash() to do. zlib stops at the cap, so a bomb costs no more
 * than SYNC_INFLATE bytes here either.
 */
function inflateSmall(
  body: Buffer,
  max: number,
  declared: number | undefined,
): { sha256: string; logicalSize: number } | null {
  const cap = Math.min(max, declared ?? max, SYNC_INFLATE);
  let inflated: { buffer: Buffer; engine: Gunzip };
  try {
    // With info: true zlib also returns its engine, whose byte count tells trailing data apart.
    inflated = gunzipSync(body, { info: true, maxOutputLength: cap + 1 }) as unknown as {
      buffer: Buffer;
      engine: Gunzip;
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_BUFFER_TOO_LARGE') {
      throw classify(err, 'gzip', undefined);
    }
    // The same order of checks as ContentMeter: the limit, then the declared size.
    if (cap === max) throw tooLarge(max);
    if (declared !== undefined && cap === declared)
      throw sizeMismatch(declared, `more than ${declared}`);
    return null;
  }
  checkGzipComplete(inflated.engine, body.length);
  return { sha256: sha256Hex(inflated.buffer), logicalSize: inflated.buffer.length };
}

/** Inflates `body` in one zlib job, hashing and counting the output; fails at the first limit crossed. */
function inflateAndHash(
  body: Buffer,
  max: number,
  declared: number | undefined,
): Promise<{ sha256: string; logicalSize: number }> {
  return new Promise((resolve, reject) => {
    const gunzip = createGunzip({ chunkSize: VERIFY_CHUNK });
    const hash = createHash('sha256');
    let count = 0;
    let failed = false;
    const fail = (err: unknown) => {
      if (failed) return;
      failed = true;
      gunzip.destroy();
      reject(err);
    };
    gunzip.on('data', (chunk: Buffer) => {
      count += chunk.length;
      if (count > max) fail(tooLarge(max));
      else if (declared !== undefined && count > declared)
        fail(sizeMismatch(declared, `more than ${declared}`));
      else hash.update(chunk);
    });
    gunzip.on('error', (err) => fail(classify(err, 'gzip', undefined)));
    gunzip.on('end', () => {
      if (failed) return;
      try {
        checkGzipComplete(gunzip, body.length);
      } catch (err) {
        fail(err);
        return;
      }
      resolve({ sha256: hash.digest('hex'), logicalSize: count });
    });
    gunzip.end(body);
  });
}

function opts(signal: AbortSignal | undefined) {
  return signal ? { signal } : {};
}

/**
 * zlib stops at the end of the last gzip member and ignores what follows
 * (it accepts trailing zero bytes, for instance). Those bytes would be stored
 * and served as part of the gzip stream, so a body must be gzip and nothing
 * else. (A cut-off stream already failed inside zlib: "unexpected end of file".)
 */
function checkGzipComplete(gunzip: Gunzip, received: number): void {
  const consumed = gunzip.bytesWritten;
  if (consumed < received)
    throw invalidGzip(`${received - consumed} bytes of trailing data after the gzip stream`);
}

function classify(err: unknown, encoding: BodyEncoding, signal: AbortSignal | undefined): unknown {
  if (err instanceof AppError) return err;
  if (signal?.aborted) return clientAborted();
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (encoding === 'gzip' && code.startsWith('Z_')) return invalidGzip((err as Error).message);
  if (code === 'ECONNRESET' || code === 'ERR_STREAM_PREMATURE_CLOSE' || code === 'ABORT_ERR') {
    return clientAborted();
  }
  return err;
}

/** Hashes and counts uncompressed bytes; fails as soon as a limit or the declared size is exceeded. */
class ContentMeter extends Transform {
  private readonly hash: Hash = createHash('sha256');
  count = 0;

  constructor(
    private readonly max: number,
    private readonly declared: number | undefined,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.max) {
      callback(tooLarge(this.max));
      return;
    }
    // A body that grows past its declared size is rejected at once, not at the end.
    if (this.declared !== undefined && this.count > this.declared) {
      callback(sizeMismatch(this.declared, `more than ${this.declared}`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** Counts bytes passing through; `max` guards against absurdly large compressed bodies. */
class ByteCounter extends Transform {
  count = 0;
  constructor(
    private readonly max: number,
    private readonly reportedLimit: number,
  ) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    if (this.count > this.max) {
      callback(tooLarge(this.reportedLimit));
      return;
    }
    callback(null, chunk);
  }
}

/**
 * Passes bytes through unchanged and also feeds them to `branch` (the inflater
 * that checks the content), waiting for the branch to take each chunk so the
 * slower of the two paces the client. Ends only after the branch has finished,
 * so by then the content has been fully measured.
 */
class Tee extends Transform {
  private branchError: Error | null = null;

  constructor(
    private readonly branch: Writable,
    private readonly branchDone: Promise<void>,
  ) {
    super();
    branchDone.catch((err: Error) => {
      this.branchError = err;
      this.destroy(err);
    });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback): void {
    if (this.branchError) {
      callback(this.branchError);
      return;
    }
    this.push(chunk);
    if (this.branch.write(chunk)) callback();
    else this.branch.once('drain', () => callback());
  }

  override _flush(callback: TransformCallback): void {
    this.branch.end();
    this.branchDone.then(() => callback(), callback);
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.branch.destroyed) this.branch.destroy(err ?? undefined);
    callback(err);
  }
}

/** A sink that drops everything (used when only measuring). */
export class Discard extends Writable {
  override _write(
    _chunk: Buffer,
    _enc: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    callback();
  }
}
