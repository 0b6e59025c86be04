/**
 * The memory that upload bodies may hold at once: bodies read whole (see
 * WHOLE_BODY in body-readers.ts) and the in-memory part of bodies held until
 * their hash is known (SpillBuffer). An upload that finds no room is not
 * made to wait: it streams, or spills to its temporary file from the first
 * byte, which needs a few buffers whatever its size. So no upload stalls on
 * it, and a burst of concurrent uploads holds at most `limit` bytes of such
 * bodies in memory, however many there are (plus the free buffers kept, and
 * bodies up to SMALL_BODY, which are read whole outside it).
 *
 * The blob cache bounds the buffers of the fills it holds whole with one of
 * its own (src/blobcache/store.ts).
 *
 * A few buffers for whole bodies are kept for the next ones: a fresh
 * megabyte-sized buffer per upload cost about 100 page faults (glibc gives
 * blocks that large back to the kernel when they are freed), which on this
 * project's machines took as much CPU as reading whole saved.
 */
export class WholeBodyBudget {
  private held = 0;
  private readonly free: Buffer[] = [];

  constructor(
    readonly limit: number,
    /** Every body read whole is at most this large. */
    readonly maxBody: number,
    /** Free buffers kept for reuse at most. */
    private readonly keep = 4,
    /** Told the bytes held after every change (a gauge). */
    private readonly onChange: (held: number) => void = () => {},
  ) {}

  /**
   * A buffer of exactly `bytes` if a whole buffer of maxBody bytes fits in the
   * budget now, with the function that gives it back; or null. After release
   * the buffer must not be used. `reuse: false` (an upload that failed while
   * a request may still be sending it) drops it instead of keeping it.
   */
  tryTake(bytes: number): { buffer: Buffer; release: (reuse?: boolean) => void } | null {
    if (bytes > this.maxBody || this.held + this.maxBody > this.limit) return null;
    this.hold(this.maxBody);
    const whole = this.free.pop() ?? Buffer.allocUnsafeSlow(this.maxBody);
    let released = false;
    return {
      buffer: whole.subarray(0, bytes),
      release: (reuse = true) => {
        if (released) return;
        released = true;
        this.hold(-this.maxBody);
        if (reuse && this.free.length < this.keep) this.free.push(whole);
      },
    };
  }

  /** Counts `bytes` held elsewhere (a spill buffer's memory) if they fit now: the release, or null. */
  tryReserve(bytes: number): (() => void) | null {
    if (this.held + bytes > this.limit) return null;
    this.hold(bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.hold(-bytes);
    };
  }

  /** Bytes held now. */
  get inUse(): number {
    return this.held;
  }

  private hold(bytes: number): void {
    this.held += bytes;
    this.onChange(this.held);
  }
}
