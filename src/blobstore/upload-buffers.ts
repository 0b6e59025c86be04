/**
 * The memory budget for uploads to S3. Every byte of an upload that is held
 * in memory while it is sent (a part being filled or sent, or a small object
 * before its single PutObject) is reserved here, before it is read or, for a
 * body the caller already holds whole, before it is sent (reserve()); when
 * the budget is spent, uploads wait for a reservation and therefore stop
 * reading their request bodies, so the clients' sockets are paused
 * (backpressure) instead of memory growing.
 *
 * A reservation always covers a whole unit of work (a full part, or a whole
 * small object), so a holder never needs more budget to finish and release:
 * no deadlock, whatever the number of concurrent uploads. A few part-sized
 * buffers are kept for reuse, also while no upload runs. Letting them go
 * when idle made every upload after a pause allocate new ones, and the
 * resident size then depended on when the garbage collector and the C
 * allocator gave the old ones back: the 1 GiB memory test through Swift
 * peaked 30 MB higher in some runs (150.5 MB in one) and stayed there. Kept,
 * they cost their size once (24 MiB with the defaults) after the first
 * upload that needs them.
 */
export class UploadBuffers {
  private available: number;
  private readonly waiters: { bytes: number; grant: () => void }[] = [];
  private readonly free: Buffer[] = [];

  constructor(
    readonly budget: number,
    readonly partSize: number,
    /** Free part buffers kept for reuse at most. */
    private readonly keep = 4,
  ) {
    if (budget < partSize) throw new Error('the upload buffer budget must hold at least one part');
    this.available = budget;
  }

  /** A buffer of exactly `bytes` (at most partSize) once the budget allows; `release` it when done. */
  async take(bytes: number, signal?: AbortSignal): Promise<Buffer> {
    await this.acquire(bytes, 'buffer', signal);
    if (bytes === this.partSize) return this.free.pop() ?? Buffer.allocUnsafeSlow(this.partSize);
    return Buffer.allocUnsafe(bytes);
  }

  release(buffer: Buffer): void {
    if (buffer.length === this.partSize && this.free.length < this.keep) this.free.push(buffer);
    this.giveBack(buffer.length);
  }

  /**
   * Counts `bytes` that are already in memory (a body the caller holds) against
   * the budget, waiting as take() does; returns the function that gives them back.
   */
  async reserve(bytes: number, signal?: AbortSignal): Promise<() => void> {
    await this.acquire(bytes, 'reservation', signal);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      this.giveBack(bytes);
    };
  }

  /** Takes `bytes` of the budget, at once or in turn after those already waiting. */
  private async acquire(bytes: number, what: string, signal?: AbortSignal): Promise<void> {
    if (bytes > this.partSize) throw new Error(`${what} of ${bytes} bytes is larger than a part`);
    if (this.waiters.length > 0 || this.available < bytes) await this.wait(bytes, signal);
    else this.available -= bytes;
  }

  private giveBack(bytes: number): void {
    this.available += bytes;
    while (this.waiters.length > 0) {
      const next = this.waiters[0];
      if (!next || next.bytes > this.available) break;
      this.waiters.shift();
      this.available -= next.bytes;
      next.grant();
    }
  }

  private wait(bytes: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiter = {
        bytes,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal?.reason ?? new Error('aborted'));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  /** Bytes currently reserved (for tests and metrics). */
  get inUse(): number {
    return this.budget - this.available;
  }
}
