import { Readable, Transform, type TransformCallback, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { createGunzip, createGzip, type Gunzip, gzip } from 'node:zlib';
import { AppError, clientAborted, invalidGzip } from '../errors.js';
import { gunzipEach } from './sync-gunzip.js';
import type { BodyEncoding, ContentId, UploadCheck } from './upload-check.js';

/**
 * Reading an upload body through its UploadCheck, in one buffer or as a
 * stream, and producing the bytes to store: always gzip, the client's own
 * gzip bytes when it sent gzip, our compression of a raw body otherwise.
 * The rules themselves (limits, hints) live in the check; this module only
 * moves bytes to it.
 */

/** zlib's 16 KiB default chunk halves compression speed; 256 KiB measured about twice as fast here. */
const ZLIB_CHUNK = 256 * 1024;
/**
 * Inflating only to verify, output chunks are hashed and dropped at once;
 * 64 KiB keeps inflate at full speed while each concurrent upload holds less.
 */
const VERIFY_CHUNK = 64 * 1024;

/**
 * Uploads whose Content-Length is at most this many bytes are always read
 * whole and checked with checkBuffer() instead of a stream pipeline. Small
 * files are most of a contest platform's traffic (sources, test inputs,
 * outputs), and for them the pipeline's fixed cost per request (half a dozen
 * streams, an AbortController and its DOMException, one thread-pool round
 * trip per chunk) was most of the CPU a PUT took. 64 KiB is one socket read's
 * worth, so memory per upload in flight stays what the streaming path holds.
 */
export const SMALL_BODY = 64 * 1024;

/**
 * Larger uploads up to this many bytes (and SPILL_THRESHOLD) are also read
 * whole, while the memory budget for bodies (BufferBudget in
 * src/runtime/buffer-budget.ts, WHOLE_BODY_BUDGET in intake.ts) has room.
 * Checked in one buffer, a 1 MiB body cost 3.1-3.9 ms of server CPU instead
 * of 5.7-6.6 ms streamed (dedup hits, 300 x 1 MiB at c=4; docs/benchmarks.md,
 * 2026-12-02):
 * the stream path hands every 64 KiB of inflated output between the thread
 * pool and the main thread, and each hand-off costs more than inflating it.
 * The S3 store holds such a body in memory for its single PutObject anyway.
 */
export const WHOLE_BODY = 2 * 1024 * 1024;

/**
 * Content up to this size is inflated in one synchronous call: cheaper than
 * an asynchronous zlib stream (above), and the event loop is blocked for
 * about 3 ms per 2 MiB of incompressible content (inflating and hashing),
 * up to about 10 ms for dense text. Inflating stops at this size (the check
 * at the declared Logical-Size when smaller), so a gzip bomb costs no more
 * than that before the stream path takes over and the check cuts it off at
 * the limit. The content is hashed in 64 KiB pieces as it comes, never held
 * whole (sync-gunzip.ts).
 */
const SYNC_INFLATE = 2 * 1024 * 1024;

const gzipAsync = promisify(gzip);

/** A body read whole and checked, and how to get the gzip bytes to store (made only if asked for). */
export interface CheckedBuffer {
  id: ContentId;
  stored(): Promise<Buffer>;
}

/** Feeds a whole body to `check`; throws what the check finds wrong. */
export async function checkBuffer(
  body: Buffer,
  check: UploadCheck,
  gzipLevel: number,
): Promise<CheckedBuffer> {
  if (check.encoding === 'identity') {
    check.content(body);
    return {
      id: check.finish(),
      stored: () => gzipAsync(body, { level: gzipLevel, chunkSize: ZLIB_CHUNK }),
    };
  }
  check.storedBytes(body.length);
  if (!check.trusted) {
    // Content declared larger than SYNC_INFLATE goes to the stream at once:
    // inflating the first SYNC_INFLATE bytes here would be wasted.
    const declared = check.declaredSize;
    const done = (declared === undefined || declared <= SYNC_INFLATE) && inflateSmall(body, check);
    if (!done) await runPipeline([Readable.from([body]), ...inflating(check, body.length)], 'gzip');
  }
  return { id: check.finish(), stored: async () => body };
}

/**
 * Inflates a small gzip body into `check` on the event loop; false when its
 * content passes SYNC_INFLATE (only possible without a declared size: the
 * check refuses content past the declared one). The check then forgets that
 * part, and the stream path measures the body from the start.
 */
function inflateSmall(body: Buffer, check: UploadCheck): boolean {
  let inflated: ReturnType<typeof gunzipEach>;
  try {
    inflated = gunzipEach(body, SYNC_INFLATE, (piece) => check.content(piece));
  } catch (err) {
    throw classify(err, 'gzip', undefined);
  }
  if (inflated === null) {
    check.restartContent();
    return false;
  }
  if (inflated.consumed < body.length) throw trailingData(body.length - inflated.consumed);
  return true;
}

/**
 * Reads a streamed body to its end through `check`, writing the bytes to
 * store into `sink`; with `sink === null` nothing is kept (the content is
 * already stored and only needs checking). Memory use is a few zlib buffers,
 * whatever the size. `storedSize` is what went into the sink.
 */
export async function checkStream(
  body: Readable,
  check: UploadCheck,
  sink: Writable | null,
  gzipLevel: number,
  signal?: AbortSignal,
): Promise<{ id: ContentId; storedSize: number }> {
  const stored = counting((chunk) => check.storedBytes(chunk.length));
  if (check.encoding === 'identity') {
    const content = counting((chunk) => check.content(chunk));
    await runPipeline(
      sink
        ? [body, content, createGzip({ level: gzipLevel, chunkSize: ZLIB_CHUNK }), stored, sink]
        : [body, content, new Discard()],
      'identity',
      signal,
    );
  } else if (check.trusted) {
    await runPipeline([body, stored, sink ?? new Discard()], 'gzip', signal);
  } else if (sink) {
    // The stored bytes go on to the sink while a branch inflates and checks them.
    const [gunzip, ...rest] = inflating(check, () => check.storedSize);
    const branch = pipeline([gunzip, ...rest]);
    await runPipeline([body, stored, new Tee(gunzip, branch), sink], 'gzip', signal);
  } else {
    await runPipeline([body, stored, ...inflating(check, () => check.storedSize)], 'gzip', signal);
  }
  return { id: check.finish(), storedSize: check.storedSize };
}

/**
 * Stages that inflate gzip into `check` and end in a discard; the last one
 * also fails if the gzip stream stopped before the `received` bytes did.
 */
function inflating(
  check: UploadCheck,
  received: number | (() => number),
): [Gunzip, Transform, Writable] {
  const gunzip = createGunzip({ chunkSize: VERIFY_CHUNK });
  const content = counting((chunk) => check.content(chunk));
  const end = new Discard(() =>
    checkGzipComplete(gunzip, typeof received === 'number' ? received : received()),
  );
  return [gunzip, content, end];
}

async function runPipeline(
  stages: (NodeJS.ReadableStream | NodeJS.WritableStream | NodeJS.ReadWriteStream)[],
  encoding: BodyEncoding,
  signal?: AbortSignal,
): Promise<void> {
  try {
    await pipeline(stages, signal ? { signal } : {});
  } catch (err) {
    throw classify(err, encoding, signal);
  }
}

/** Reads a body of `length` announced bytes into one buffer: `into` when given (exactly `length` long). */
export function readWhole(
  body: Readable,
  length: number,
  signal?: AbortSignal,
  into?: Buffer,
): Promise<Buffer> {
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
      if (err !== null) reject(err);
      else resolve(into ?? Buffer.concat(chunks, size));
    };
    const onData = (chunk: Buffer) => {
      if (into) {
        // Past `length` would overrun the buffer; it cannot happen (see onEnd),
        // but a wrong byte count must fail, not write out of bounds.
        if (size + chunk.length > length) return settle(clientAborted());
        chunk.copy(into, size);
      } else chunks.push(chunk);
      size += chunk.length;
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

/**
 * zlib stops at the end of the last gzip member and ignores what follows
 * (it accepts trailing zero bytes, for instance). Those bytes would be stored
 * and served as part of the gzip stream, so a body must be gzip and nothing
 * else. (A cut-off stream already failed inside zlib: "unexpected end of file".)
 */
function checkGzipComplete(gunzip: Gunzip, received: number): void {
  const consumed = gunzip.bytesWritten;
  if (consumed < received) throw trailingData(received - consumed);
}

function trailingData(bytes: number): AppError {
  return invalidGzip(`${bytes} bytes of trailing data after the gzip stream`);
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

/** A pass-through stage that shows every chunk to `count`, which may throw to fail the upload. */
function counting(count: (chunk: Buffer) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, callback: TransformCallback) {
      try {
        count(chunk);
      } catch (err) {
        callback(err as Error);
        return;
      }
      callback(null, chunk);
    },
  });
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

/** A sink that drops everything; `atEnd` may throw to fail the pipeline once all is written. */
class Discard extends Writable {
  constructor(private readonly atEnd?: () => void) {
    super();
  }

  override _write(
    _chunk: Buffer,
    _enc: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    callback();
  }

  override _final(callback: (error?: Error | null) => void): void {
    try {
      this.atEnd?.();
      callback();
    } catch (err) {
      callback(err as Error);
    }
  }
}
