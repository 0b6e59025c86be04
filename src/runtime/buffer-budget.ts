/**
 * A bound on the memory some bodies may hold at once, and the buffers they
 * hold it in. A taker that finds no room is never made to wait: it is told
 * so at once (null) and takes its slower path that needs a few buffers
 * whatever the size (streaming, spilling to a file). So nothing stalls on
 * it, and a burst holds at most `limit` bytes, however many bodies come
 * (plus the free buffers kept, which are not counted as held).
 *
 * Two owners, each with its own budget:
 * - uploads (ContentIntake, src/dedup/intake.ts): bodies read whole, and the
 *   in-memory part of bodies held until their hash is known (SpillBuffer,
 *   through tryReserve());
 * - the blob cache (src/blobcache/store.ts): fills held whole on their way
 *   to the client.
 *
 * A few free buffers are kept for the next takers: a fresh megabyte-sized
 * buffer each time cost about 100 page faults (glibc gives blocks that large
 * back to the kernel when they are freed), which on this project's machines
 * took as much CPU as reading whole saved.
 */
export class BufferBudget {
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
