import type { Logger } from '../observability/logger.js';
import { type CopyOptions, copyFile } from './copy.js';
import type { MigrationMetrics } from './metrics.js';

export interface MigrationReport {
  copied: number;
  skipped: number;
  failed: number;
  /** The first MAX_LISTED_FAILURES failures (all are logged as they happen). */
  failures: Array<{ path: string; reason: string }>;
  /** Uncompressed bytes copied. */
  bytes: number;
}

/** Failures kept for the summary: millions of files could all fail (a wrong URL). */
export const MAX_LISTED_FAILURES = 1000;

export interface MigrationOptions extends CopyOptions {
  /** The paths to copy, as the old store lists them (or a --file-list), streamed. */
  paths: AsyncIterable<string>;
  concurrency: number;
  logger: Logger;
  metrics?: MigrationMetrics | undefined;
  /** After each file (progress). */
  onFile?: (outcome: 'copied' | 'skipped' | 'failed', bytes: number) => void;
  signal?: AbortSignal | undefined;
}

/**
 * Copies every listed file, `concurrency` at a time, pulling paths from the
 * listing as it goes: memory holds the files in flight and the first failures,
 * not the listing. A file that fails is logged and reported; it never ends
 * the run.
 */
export async function migrate(o: MigrationOptions): Promise<MigrationReport> {
  const report: MigrationReport = { copied: 0, skipped: 0, failed: 0, failures: [], bytes: 0 };
  const paths = o.paths[Symbol.asyncIterator]();
  // The workers share one iterator; its next() calls are serialized here.
  let pulling: Promise<unknown> = Promise.resolve();
  const next = () => {
    const result = pulling.then(() => paths.next());
    pulling = result.catch(() => {});
    return result;
  };
  const worker = async () => {
    for (;;) {
      if (o.signal?.aborted) return;
      const item = await next();
      if (item.done) return;
      const path = item.value;
      const result = await copyFile(o, path, o.signal);
      o.metrics?.files.inc({ outcome: result.outcome });
      if (result.outcome === 'copied') {
        report.copied++;
        report.bytes += result.bytes;
        o.metrics?.bytes.inc(result.bytes);
      } else if (result.outcome === 'skipped') report.skipped++;
      else {
        report.failed++;
        if (report.failures.length < MAX_LISTED_FAILURES) {
          report.failures.push({ path, reason: result.reason });
        }
        o.logger.warn({ path, reason: result.reason }, 'could not migrate a file');
      }
      o.onFile?.(result.outcome, result.outcome === 'copied' ? result.bytes : 0);
    }
  };
  try {
    // Settled, not Promise.all: a listing that fails ends the run only once
    // every copy in flight has ended (the caller closes the stores after).
    const ended = await Promise.allSettled(
      Array.from({ length: Math.max(1, o.concurrency) }, worker),
    );
    const failed = ended.find((e) => e.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    // Stopped early (shutdown): the listing's request is ended, not left paused.
    await paths.return?.();
  }
  return report;
}
