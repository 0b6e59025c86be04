import {
  createGunzip,
  type Gunzip,
  gunzipSync,
  gzipSync,
  type ZlibReset,
  constants as zlibConstants,
} from 'node:zlib';

/**
 * Synchronous gunzip of a body held in memory, handing the content to a
 * callback in pieces of one reused buffer instead of returning it whole.
 *
 * Why not `gunzipSync`: it makes a new inflater per call and returns the
 * content in a fresh buffer. For 1 MiB bodies that buffer is allocated
 * outside V8's heap and handed back to the kernel when freed, so every call
 * page-faults its way through a new megabyte: in `perf` of 200 x 1 MiB PUTs
 * through S3, 70% of the server's page faults, about 0.5 ms of CPU per MB.
 * The content is only ever hashed and counted, so it need not exist whole.
 * Alone (1 MiB incompressible, with SHA-256, three rounds of 500): 1.86-1.98
 * ms and 68-96 page faults per call through `gunzipSync` with its output
 * sized to the content (the code before), 1.40-1.42 ms and under one this way.
 *
 * Node has no public synchronous call that inflates into the caller's
 * buffer. `gunzipSync` itself drives the inflater's native handle through
 * `_handle.writeSync()` and reads the counts back from `_writeState`; this
 * does the same, on one long-lived inflater reset between bodies. Those two
 * are internal to `node:zlib`, so this way is tried at load
 * (`inPlaceWorks`) and, should a Node release change them, every call goes
 * through `gunzipSync` instead (same answers, the old cost):
 * `inflatesInPlace` says which, and the unit tests require the fast way on
 * the Node version this project runs on.
 */

/** The parts of a zlib stream that `gunzipSync` itself uses. */
interface ZlibInternals {
  _handle?: {
    writeSync?: (
      flush: number,
      input: Buffer,
      inOffset: number,
      inLength: number,
      output: Buffer,
      outOffset: number,
      outLength: number,
    ) => void;
  };
  /** After writeSync: [output space left, input bytes left]. */
  _writeState?: Uint32Array;
}

/** Output piece: big enough that zlib runs at full speed; one is kept for the life of the process. */
const PIECE = 64 * 1024;

export interface Gunzipped {
  /** Bytes of the body the gzip stream took: fewer than given means trailing data. */
  consumed: number;
  /** Content bytes handed to the callback. */
  size: number;
}

/** zlib's reset() is on every zlib stream; Node's typings leave it off Gunzip. */
type Inflater = Gunzip & ZlibReset;

let inflater: Inflater | null = newInflater();
let piece: Buffer | null = null;

function internalsOf(engine: Gunzip): Required<ZlibInternals> | null {
  const { _handle, _writeState } = engine as unknown as ZlibInternals;
  if (typeof _handle?.writeSync !== 'function' || !(_writeState instanceof Uint32Array)) {
    return null;
  }
  return { _handle, _writeState };
}

function newInflater(): Inflater {
  // Its own output buffer (chunkSize) is never used: the smallest zlib allows.
  const engine = createGunzip({ chunkSize: zlibConstants.Z_MIN_CHUNK }) as Inflater;
  // A zlib error destroys the stream, which then emits 'error' on the next
  // tick; the error is read from `errored` right away, so this only keeps
  // that emission from becoming an uncaught exception.
  engine.on('error', () => {});
  return engine;
}

/**
 * Whether the in-place way works on this Node, tried once at load on a body
 * of a few hundred bytes: the internals are there, a body of two members whose
 * content spans pieces comes out as gunzipSync makes it, and a damaged one
 * fails. Checking only that the internals exist would not catch a release
 * that kept their names but changed how they report.
 */
function inPlaceWorks(): boolean {
  if (inflater === null || internalsOf(inflater) === null) return false;
  try {
    const body = Buffer.concat([gzipSync(Buffer.alloc(PIECE + PIECE / 2, 'ab')), gzipSync('end')]);
    const pieces: Buffer[] = [];
    const result = gunzipInPlace(body, 2 * PIECE, (p) => pieces.push(Buffer.from(p)));
    const same = result?.consumed === body.length && Buffer.concat(pieces).equals(gunzipSync(body));
    let refused = false;
    try {
      gunzipInPlace(body.subarray(0, body.length - 30), 2 * PIECE, () => {});
    } catch {
      refused = true;
    }
    return same && refused && pieces.length > 1;
  } catch {
    return false;
  }
}

/** True when bodies are inflated into one reused buffer (see above), false when through gunzipSync. */
export const inflatesInPlace = inPlaceWorks();

/**
 * Inflates a whole gzip body (one or more members, as gunzipSync takes
 * them) and hands its content to `sink` piece by piece; each piece is only
 * valid during the call. Returns null as soon as the content passes `max`
 * bytes, when the sink may have seen up to `max` of them (the caller decides
 * what to do with larger content, and the event loop is never held longer
 * than inflating `max` bytes). zlib's errors are thrown as gunzipSync throws
 * them; so is whatever `sink` throws, which stops the inflating.
 */
export function gunzipEach(
  body: Buffer,
  max: number,
  sink: (piece: Buffer) => void,
): Gunzipped | null {
  return inflatesInPlace ? gunzipInPlace(body, max, sink) : gunzipWhole(body, max, sink);
}

function gunzipInPlace(body: Buffer, max: number, sink: (piece: Buffer) => void): Gunzipped | null {
  const engine = inflater ?? newInflater();
  inflater = null;
  const { _handle, _writeState: state } = internalsOf(engine) as Required<ZlibInternals>;
  const writeSync = _handle.writeSync as NonNullable<typeof _handle.writeSync>;
  const out = piece ?? Buffer.allocUnsafe(PIECE);
  piece = null;
  let inOffset = 0;
  let inLeft = body.length;
  let size = 0;
  try {
    for (;;) {
      writeSync.call(_handle, zlibConstants.Z_FINISH, body, inOffset, inLeft, out, 0, PIECE);
      // zlib reports an error by destroying the stream with it.
      if (engine.errored || engine.destroyed) {
        throw engine.errored ?? new Error('zlib closed the inflater');
      }
      const outLeft = state[0] as number;
      const have = PIECE - outLeft;
      inOffset += inLeft - (state[1] as number);
      inLeft = state[1] as number;
      if (have > 0) {
        size += have;
        if (size > max) return null;
        sink(out.subarray(0, have));
      }
      // zlib filled the piece: there may be more. Else it reached the end
      // (of the last member, or of the input: then it has reported an error).
      if (outLeft !== 0) break;
    }
    return { consumed: inOffset, size };
  } finally {
    piece = out;
    // An errored inflater is destroyed; any other is reset (also one stopped
    // midway, by the bound or the sink) and kept for the next body.
    if (!engine.errored && !engine.destroyed) {
      engine.reset();
      inflater = engine;
    }
  }
}

/** gunzipEach() the way gunzipSync does it, with the content in one buffer. */
export function gunzipWhole(
  body: Buffer,
  max: number,
  sink: (piece: Buffer) => void,
): Gunzipped | null {
  let inflated: { buffer: Buffer; engine: Gunzip };
  try {
    // maxOutputLength must be at least 1: a bound of 0 is checked below.
    inflated = gunzipSync(body, { info: true, maxOutputLength: Math.max(1, max) }) as unknown as {
      buffer: Buffer;
      engine: Gunzip;
    };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return null;
    throw err;
  }
  if (inflated.buffer.length > max) return null;
  if (inflated.buffer.length > 0) sink(inflated.buffer);
  return { consumed: inflated.engine.bytesWritten, size: inflated.buffer.length };
}
