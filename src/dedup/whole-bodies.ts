/**
 * The memory that upload bodies read whole may take at once (see WHOLE_BODY
 * in body-readers.ts), and the buffers they are read into. A body that does
 * not fit is not made to wait: it takes the streaming path, which needs a few
 * buffers whatever its size. So the fast path never stalls an upload, and a
 * burst of concurrent uploads costs at most `limit` bytes beyond what
 * streaming them would: `limit / maxBody` bodies at once.
 *
 * A few buffers of the largest size are kept for the next bodies: a fresh
 * megabyte-sized buffer per upload cost about 100 page faults (glibc gives
 * blocks that large back to the kernel when they are freed), which on this
 * project's machines took as much CPU as the check saved.
 */
export class WholeBodyBudget {
  private held = 0;
  private readonly free: Buffer[] = [];

  constructor(
    readonly limit: number,
    /** Every body held is at most this large. */
    readonly maxBody: number,
    /** Free buffers kept for reuse at most. */
    private readonly keep = 4,
  ) {}

  /**
   * A buffer of exactly `bytes` if they fit in the budget now, with the
   * function that gives it back (after which it must not be used); or null.
   */
  tryTake(bytes: number): { buffer: Buffer; release: () => void } | null {
    // Each body takes a whole buffer of maxBody bytes, whatever its size.
    if (bytes > this.maxBody || this.held + this.maxBody > this.limit) return null;
    this.held += this.maxBody;
    const whole = this.free.pop() ?? Buffer.allocUnsafeSlow(this.maxBody);
    let released = false;
    return {
      buffer: whole.subarray(0, bytes),
      release: () => {
        if (released) return;
        released = true;
        this.held -= this.maxBody;
        if (this.free.length < this.keep) this.free.push(whole);
      },
    };
  }

  /** Bytes held now (for tests). */
  get inUse(): number {
    return this.held;
  }
}
