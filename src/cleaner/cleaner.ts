import type { Backends } from '../backends.js';
import type { BlobStore } from '../blobstore/port.js';
import type { Config } from '../config/schema.js';
import { blobKey, hashOfKey } from '../dedup/keys.js';
import { isAppError } from '../errors.js';
import type { Lock, LockManager, LockSession } from '../locks/port.js';
import type { MetaStore } from '../metastore/port.js';
import type { Logger } from '../observability/logger.js';
import type { Metrics } from '../observability/metrics.js';
import { crashPoint } from '../runtime/faults.js';
import type { CleanerMetrics } from './metrics.js';

export interface CleanerOptions {
  meta: MetaStore;
  blobs: BlobStore;
  locks: LockManager;
  logger: Logger;
  keyDepth: number;
  /** CLEANER_GRACE, in ms. */
  graceMs: number;
  /** CLEANER_BATCH_SIZE: blobs looked at, locked and deleted together. */
  batchSize: number;
  /** CLEANER_MAX_DELETES: objects deleted per run at most. */
  maxDeletes: number;
  /** LOCK_TIMEOUT, in ms: a blob a request holds longer is left for the next run. */
  lockTimeoutMs: number;
  metrics?: CleanerMetrics | undefined;
  now?: () => number;
}

/** What one run did (or, dry, would do). */
export interface CleanerReport {
  /** False when another instance was cleaning: this one did nothing. */
  ran: boolean;
  dryRun: boolean;
  /** Unreferenced blobs removed: row and object. */
  deletedBlobs: number;
  /** Objects under the blob layout without a row (left by crashed uploads) removed. */
  deletedOrphans: number;
  /** Unfinished uploads (S3 multipart, partial files) removed. */
  staleUploads: number;
  freedBytes: number;
  /** Stopped at CLEANER_MAX_DELETES: more is left for the next run. */
  limited: boolean;
}

/** What a run removes, one at a time (for `cleanup --dry-run` and progress). */
export interface CleanerItem {
  kind: 'unreferenced' | 'orphan';
  key: string;
  size: number;
}

/** Unfinished uploads are removed once older than CLEANER_GRACE and than this. */
const STALE_UPLOAD_MS = 24 * 60 * 60 * 1000;

/** Lock name of the cleaner itself: with PostgreSQL locks, one instance cleans at a time. */
export const CLEANER_LOCK = 'cleaner';

/**
 * The garbage collector (SPEC §6). A run deletes
 * 1. blobs unreferenced for longer than CLEANER_GRACE: each is locked
 *    (`blob:<hash>` exclusive, which PUTs about to reference it take shared),
 *    its row deleted only if it is still unreferenced and old enough, and
 *    only then its object. A crash between the two leaves an orphan object,
 *    never a row without its object;
 * 2. objects under the blob layout with no row, older than CLEANER_GRACE
 *    (an upload that crashed between storing and recording), each checked
 *    again under its lock;
 * 3. unfinished uploads older than CLEANER_GRACE and a day.
 * At most CLEANER_MAX_DELETES objects a run. A database error ends the run:
 * a failing query is never read as "unreferenced" or "no row". Keys outside
 * the blob layout are never touched.
 */
export class Cleaner {
  private readonly now: () => number;

  constructor(private readonly o: CleanerOptions) {
    this.now = o.now ?? Date.now;
  }

  /**
   * One run. `signal` (the server shutting down) ends it at the next batch,
   * with what was done so far consistent.
   */
  async run(
    options: {
      dryRun?: boolean;
      onItem?: (item: CleanerItem) => void;
      signal?: AbortSignal | undefined;
    } = {},
  ): Promise<CleanerReport> {
    const dryRun = options.dryRun ?? false;
    const started = this.now();
    const report: CleanerReport = {
      ran: false,
      dryRun,
      deletedBlobs: 0,
      deletedOrphans: 0,
      staleUploads: 0,
      freedBytes: 0,
      limited: false,
    };
    const session = this.o.locks.session();
    try {
      try {
        // Taken or not at once: another instance's run is this one's.
        await session.acquire(CLEANER_LOCK, 'exclusive', { timeoutMs: 1 });
      } catch (err) {
        if (!isAppError(err, 'LOCK_TIMEOUT')) throw err;
        this.o.metrics?.runs.inc({ outcome: 'skipped' });
        return report;
      }
      report.ran = true;
      const cutoff = started - this.o.graceMs;
      const pass = {
        session,
        cutoff,
        dryRun,
        report,
        onItem: options.onItem,
        signal: options.signal,
      };
      await this.unreferenced(pass);
      if (!report.limited) await this.orphans(pass);
      if (!dryRun && !report.limited && !options.signal?.aborted) {
        // At least a day: a slow client's large upload may legitimately take hours.
        report.staleUploads = await this.o.blobs.removeStaleUploads(
          new Date(Math.min(cutoff, started - STALE_UPLOAD_MS)),
          (key) => hashOfKey(key, this.o.keyDepth) !== null,
        );
      }
      this.o.metrics?.runs.inc({ outcome: 'completed' });
      this.o.logger.info({ ...report, ms: this.now() - started }, 'cleaner run finished');
      return report;
    } catch (err) {
      this.o.metrics?.runs.inc({ outcome: 'failed' });
      this.o.metrics?.errors.inc();
      this.o.logger.error({ err, ...report }, 'cleaner run failed; nothing more deleted');
      throw err;
    } finally {
      await session.end();
      this.o.metrics?.lastRun.set(this.now() / 1000);
    }
  }

  /** Pass 1: unreferenced blobs, oldest first. */
  private async unreferenced(p: Pass): Promise<void> {
    let after: { zeroSince: number; hash: string } | null = null;
    for (;;) {
      if (p.signal?.aborted) return;
      const room = this.o.maxDeletes - deletions(p.report);
      const limit = Math.min(this.o.batchSize, Math.max(room, 1));
      const page = await this.o.meta.listUnreferenced({ before: p.cutoff, after, limit });
      const last = page[page.length - 1];
      if (!last) return;
      if (room <= 0) {
        p.report.limited = true;
        return;
      }
      after = { zeroSince: last.zeroSince ?? 0, hash: last.hash };
      if (p.dryRun) {
        for (const b of page) this.found(p, 'unreferenced', this.key(b.hash), b.storedSize);
        p.report.deletedBlobs += page.length;
      } else {
        await this.withBlobLocks(
          p.session,
          page.map((b) => b.hash),
          async (locked) => {
            // Still unreferenced and old enough, under the locks: the rows go first.
            const deleted = await this.o.meta.deleteUnreferenced(locked, p.cutoff);
            if (deleted.length === 0) return;
            crashPoint('cleaner.rows-deleted');
            await this.o.blobs.deleteMany(deleted.map((b) => this.key(b.hash)));
            crashPoint('cleaner.objects-deleted');
            for (const b of deleted) this.found(p, 'unreferenced', this.key(b.hash), b.storedSize);
            p.report.deletedBlobs += deleted.length;
            this.o.metrics?.deletedBlobs.inc(deleted.length);
          },
        );
      }
      if (page.length < limit) return;
    }
  }

  /** Reports one deletion (done, or in a dry run, to do). */
  private found(p: Pass, kind: CleanerItem['kind'], key: string, size: number): void {
    p.report.freedBytes += size;
    if (!p.dryRun) this.o.metrics?.freedBytes.inc(size);
    p.onItem?.({ kind, key, size });
  }

  /** Pass 2: objects under the layout that have no row, older than the grace period. */
  private async orphans(p: Pass): Promise<void> {
    let batch: { hash: string; key: string; size: number }[] = [];
    const flush = async () => {
      const candidates = batch;
      batch = [];
      if (candidates.length === 0) return;
      const known = await this.o.meta.existingBlobs(candidates.map((c) => c.hash));
      const orphans = candidates
        .filter((c) => !known.has(c.hash))
        .slice(0, this.o.maxDeletes - deletions(p.report));
      if (orphans.length === 0) return;
      if (p.dryRun) {
        for (const o of orphans) this.found(p, 'orphan', o.key, o.size);
        p.report.deletedOrphans += orphans.length;
        return;
      }
      await this.withBlobLocks(
        p.session,
        orphans.map((o) => o.hash),
        async (locked) => {
          // A PUT may have recorded one since the check (it takes the lock to do so).
          const recorded = await this.o.meta.existingBlobs(locked);
          const gone = orphans.filter((o) => locked.includes(o.hash) && !recorded.has(o.hash));
          if (gone.length === 0) return;
          await this.o.blobs.deleteMany(gone.map((o) => o.key));
          for (const o of gone) this.found(p, 'orphan', o.key, o.size);
          p.report.deletedOrphans += gone.length;
          this.o.metrics?.deletedOrphans.inc(gone.length);
        },
      );
    };
    for await (const item of this.o.blobs.list({ signal: p.signal })) {
      if (p.signal?.aborted) return;
      const hash = hashOfKey(item.key, this.o.keyDepth);
      if (hash === null || item.lastModified.getTime() > p.cutoff) continue;
      if (deletions(p.report) + batch.length >= this.o.maxDeletes) {
        // The batch may hold objects with rows; only a full one means more is left.
        await flush();
        if (deletions(p.report) >= this.o.maxDeletes) {
          p.report.limited = true;
          return;
        }
      }
      batch.push({ hash, key: item.key, size: item.size });
      if (batch.length >= this.o.batchSize) await flush();
    }
    await flush();
  }

  /**
   * Runs `fn` with `blob:<hash>` held exclusively for each hash it could
   * lock within LOCK_TIMEOUT (a blob a request holds longer is left for the
   * next run), and releases them however `fn` ends.
   */
  private async withBlobLocks(
    session: LockSession,
    hashes: string[],
    fn: (locked: string[]) => Promise<void>,
  ): Promise<void> {
    const held: Lock[] = [];
    const locked: string[] = [];
    try {
      for (const hash of hashes) {
        try {
          held.push(
            await session.acquire(`blob:${hash}`, 'exclusive', { timeoutMs: this.o.lockTimeoutMs }),
          );
          locked.push(hash);
        } catch (err) {
          if (!isAppError(err, 'LOCK_TIMEOUT')) throw err;
        }
      }
      if (locked.length > 0) await fn(locked);
    } finally {
      for (const lock of held) await lock.release();
    }
  }

  private key(hash: string): string {
    return blobKey(hash, this.o.keyDepth);
  }
}

interface Pass {
  session: LockSession;
  cutoff: number;
  dryRun: boolean;
  report: CleanerReport;
  onItem: ((item: CleanerItem) => void) | undefined;
  signal: AbortSignal | undefined;
}

function deletions(r: CleanerReport): number {
  return r.deletedBlobs + r.deletedOrphans;
}

/** The cleaner as the configuration describes it (the server's and `s3dedup cleanup`'s). */
export function createCleaner(
  config: Config,
  backends: Backends,
  logger: Logger,
  metrics?: Metrics,
): Cleaner {
  return new Cleaner({
    meta: backends.meta,
    blobs: backends.blobs,
    locks: backends.locks,
    logger,
    keyDepth: config.S3_KEY_SHARDING_DEPTH,
    graceMs: config.CLEANER_GRACE * 1000,
    batchSize: config.CLEANER_BATCH_SIZE,
    maxDeletes: config.CLEANER_MAX_DELETES,
    lockTimeoutMs: config.LOCK_TIMEOUT * 1000,
    metrics: metrics?.cleaner,
  });
}
