/** Small statistics helpers: medians across runs, percentiles across requests. */

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  const hi = sorted[mid] ?? Number.NaN;
  if (sorted.length % 2 === 1) return hi;
  return ((sorted[mid - 1] ?? hi) + hi) / 2;
}

/**
 * Nearest-rank percentile (p in 0..100) of values already sorted ascending:
 * the smallest value with at least p% of the values at or below it, so p99 of
 * 2,000 requests is the 1,980th fastest, a latency some request really had.
 */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] ?? Number.NaN;
}

export interface Timed {
  /** Wall time from the first request sent to the last answer read. */
  elapsedMs: number;
  /** Per-request latency, sorted ascending. */
  latenciesMs: Float64Array;
}

/**
 * Runs `op(0..count-1)` with `concurrency` requests in flight, like a client
 * with that many worker threads, each sending its next request as soon as the
 * previous one is answered. Any failure stops the run: a benchmark of failing
 * requests measures nothing.
 */
export async function runConcurrent(
  count: number,
  concurrency: number,
  op: (index: number) => Promise<void>,
): Promise<Timed> {
  const latencies = new Float64Array(count);
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    for (;;) {
      const index = next++;
      if (index >= count) return;
      const t0 = performance.now();
      try {
        await op(index);
      } catch (err) {
        next = count; // the other workers stop after their current request
        throw err;
      }
      latencies[index] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  const elapsedMs = performance.now() - started;
  return { elapsedMs, latenciesMs: latencies.sort() };
}
