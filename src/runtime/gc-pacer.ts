import { getHeapStatistics } from 'node:v8';
import { exposedGc } from './node-flags.js';

export interface GcPacerOptions {
  /** Runs a minor collection; without it (no `--expose-gc`) the pacer does nothing. */
  collect: (() => void) | undefined;
  /** Runs a full collection (see `majorStepBytes`); without it, only minor ones are run. */
  collectMajor?: (() => void) | undefined;
  /** Bytes of memory held outside V8's heap (buffers), as V8 accounts them. */
  externalBytes?: () => number;
  /** Growth of external memory that triggers a collection. */
  stepBytes?: number;
  /**
   * Growth of what minor collections leave, over what the last full one
   * left, that triggers a full collection.
   */
  majorStepBytes?: number;
  /** Least time between two full collections: each one pauses every request. */
  majorIntervalMs?: number;
  /** How often the level is looked at while requests are in flight. */
  intervalMs?: number;
  /** Milliseconds on a monotonic clock (tests pass a fake one). */
  now?: () => number;
}

/** What `track` listens to: a ServerResponse, a socket. */
interface Closable {
  once(event: 'close', listener: () => void): unknown;
  off(event: 'close', listener: () => void): unknown;
}

/**
 * Keeps the garbage of streamed bodies from piling up in the resident set.
 *
 * Every socket read in Node is a fresh buffer, and the HTTP parser copies each
 * body chunk once more, so relaying a file allocates about twice its size in
 * short-lived buffers. They die young, but V8 does not count their bytes
 * towards starting a young-generation collection (the buffer objects on its
 * heap are tiny): it collects them when its external-memory limit, 64 MB over
 * the level after the last full collection, is reached. A server moving
 * 300 MB/s therefore carries 40-60 MB of dead buffers, which is a third of the
 * 150 MB SPEC §9 allows for a 1 GiB transfer (docs/memory.md).
 *
 * While requests are in flight, the pacer looks at V8's external-memory figure
 * every few milliseconds and runs a minor collection (about 0.2 ms with the
 * CLI's 2 MB semi-spaces) once it has grown `stepBytes` above the lowest level
 * seen since the last one. Buffers still in use survive it, so a new upload's
 * part buffers raise the level once and then stop triggering. When nothing is
 * in flight the timer stops, so an idle server does no work.
 *
 * Buffers that stay in use across a few minor collections (S3 part buffers,
 * whole small uploads on their way to S3) are promoted to the old generation,
 * and once dropped only a full collection frees them; V8 starts one only
 * 64 MB later. So when what minor collections leave has grown `majorStepBytes`
 * over what the last full one left, the pacer runs a full one, at most one
 * per `majorIntervalMs`: it pauses every request for a few milliseconds.
 * Buffers still in use raise that level once; it then starts from what that
 * collection left. Measured: a 1 GiB raw upload through Swift peaked at
 * 156.6 MB without it, against 120-127 MB in other runs (docs/memory.md).
 */
export class GcPacer {
  private readonly collect: (() => void) | undefined;
  private readonly collectMajor: (() => void) | undefined;
  private readonly externalBytes: () => number;
  private readonly stepBytes: number;
  private readonly majorStepBytes: number;
  private readonly majorIntervalMs: number;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastMajorAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private floor = Number.POSITIVE_INFINITY;
  /** What the last full collection left (or the lowest level seen since). */
  private majorFloor = Number.POSITIVE_INFINITY;
  /** Collections run so far, minor and full (s3dedup_gc_pacer_collections_total). */
  collections = 0;
  /** Of those, full collections (s3dedup_gc_pacer_full_collections_total). */
  majorCollections = 0;

  constructor(options: GcPacerOptions) {
    this.collect = options.collect;
    this.collectMajor = options.collect ? options.collectMajor : undefined;
    this.externalBytes = options.externalBytes ?? (() => getHeapStatistics().external_memory);
    this.stepBytes = options.stepBytes ?? 4 * 1024 * 1024;
    this.majorStepBytes = options.majorStepBytes ?? 32 * 1024 * 1024;
    this.majorIntervalMs = options.majorIntervalMs ?? 1000;
    this.now = options.now ?? (() => performance.now());
    this.intervalMs = options.intervalMs ?? 5;
  }

  /** Whether collections are paced at all (the process was started with `--expose-gc`). */
  get enabled(): boolean {
    return this.collect !== undefined;
  }

  /** Whether the timer is running (for tests). */
  get watching(): boolean {
    return this.timer !== undefined;
  }

  /**
   * Counts one request in flight until its response or its connection emits
   * 'close', whichever comes first. A response emits it once, finished or
   * not, except one still queued behind a pipelined request when the
   * connection drops: that one never does, and only the connection's 'close'
   * ends its count.
   */
  track(response: Closable, connection?: Closable): void {
    if (!this.collect) return;
    this.inFlight++;
    let counted = true;
    const done = () => {
      if (!counted) return;
      counted = false;
      this.inFlight--;
      response.off('close', done);
      connection?.off('close', done);
    };
    response.once('close', done);
    connection?.once('close', done);
    if (!this.timer) {
      this.floor = this.externalBytes();
      this.majorFloor = Math.min(this.majorFloor, this.floor);
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      // Never what keeps the process alive.
      this.timer.unref();
    }
  }

  /** Stops the timer; requests tracked later start it again. */
  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const level = this.externalBytes();
    if (level < this.floor) this.floor = level;
    if (level < this.majorFloor) this.majorFloor = level;
    if (level - this.floor >= this.stepBytes) {
      this.collect?.();
      this.collections++;
      // The new floor is what survived. If V8 frees the buffers in a
      // background task instead (Node's default; the CLI turns it off), the
      // level falls only later, and later ticks lower the floor then.
      this.floor = this.externalBytes();
      if (
        this.collectMajor &&
        this.floor - this.majorFloor >= this.majorStepBytes &&
        this.now() - this.lastMajorAt >= this.majorIntervalMs
      ) {
        this.collectMajor();
        this.lastMajorAt = this.now();
        this.collections++;
        this.majorCollections++;
        this.floor = this.externalBytes();
        this.majorFloor = this.floor;
      }
    }
    if (this.inFlight === 0) this.stop();
  }
}

/** The process's pacer: paces minor and full collections when `gc` is available (src/runtime/node-flags.ts). */
export function processGcPacer(): GcPacer {
  const gc = exposedGc();
  return new GcPacer({
    collect: gc ? () => gc({ type: 'minor' }) : undefined,
    collectMajor: gc ? () => gc({ type: 'major' }) : undefined,
  });
}
