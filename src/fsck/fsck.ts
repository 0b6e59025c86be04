import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import type { BlobListing, BlobStore } from '../blobstore/port.js';
import { blobKey, hashOfKey } from '../dedup/keys.js';
import type { LockManager } from '../locks/port.js';
import type { BlobRecord, MetaStore, Miscount, StoreTotals } from '../metastore/port.js';

export interface FsckOptions {
  meta: MetaStore;
  blobs: BlobStore;
  locks: LockManager;
  keyDepth: number;
  /** CLEANER_GRACE, in ms: younger objects without a row are uploads in flight, not orphans. */
  graceMs: number;
  lockTimeoutMs: number;
  /** Re-read every object and check its content. */
  deep: boolean;
  /** Fix what can be fixed (see Fsck). */
  repair: boolean;
  /** Paths reported per lost blob at most. */
  pathsPerBlob?: number;
  /** Called once per blob row checked (progress). */
  onBlob?: () => void;
  now?: () => number;
}

/** A blob whose content is lost, with the paths that pointed at it. */
export interface LostBlob {
  hash: string;
  damage: 'missing' | 'corrupt';
  /** Why, for corrupt content. */
  detail?: string;
  paths: string[];
  pathCount: number;
  /** --repair gave it up: its paths and row are gone. */
  dropped: boolean;
}

export interface FsckReport {
  blobs: number;
  objects: number;
  /** Referenced content whose object is gone or wrong: data loss. */
  lost: LostBlob[];
  /** Counts that did not match the paths pointing at the blob (recounted with --repair). */
  miscounted: Array<Miscount & { repaired: boolean }>;
  /** Objects whose size is not the recorded one. */
  sizeMismatches: Array<{ hash: string; recorded: number; actual: number; repaired: boolean }>;
  /** Objects under the layout without a row, older than the grace period. */
  orphanObjects: number;
  /** Rows of unreferenced content whose object is gone. */
  orphanRows: number;
  /** Orphan objects and rows removed (--repair). */
  orphansRemoved: number;
  /**
   * The totals the database keeps for /metrics, when they differ from the
   * blob rows added up in the same snapshot (corrected with --repair).
   */
  totalsDrift: { kept: StoreTotals; counted: StoreTotals; repaired: boolean } | null;
}

/** What the report means for an operator (and the exit code). */
export function verdict(r: FsckReport): 'consistent' | 'repaired' | 'inconsistent' | 'data-lost' {
  if (r.lost.length > 0) return 'data-lost';
  const open =
    r.miscounted.some((m) => !m.repaired) ||
    r.sizeMismatches.some((m) => !m.repaired) ||
    r.orphanObjects + r.orphanRows > r.orphansRemoved ||
    (r.totalsDrift !== null && !r.totalsDrift.repaired);
  if (open) return 'inconsistent';
  const any =
    r.miscounted.length + r.sizeMismatches.length + r.orphanObjects + r.orphanRows > 0 ||
    r.totalsDrift !== null;
  return any ? 'repaired' : 'consistent';
}

/** Rows read per metadata query, and content checked at once with --deep. */
const PAGE = 500;
const DEEP_CONCURRENCY = 4;

/**
 * Checks the SPEC §3 invariants on a live store, with constant memory: the
 * bucket's listing (in key order, which is hash order) and the blob rows
 * (by hash) are walked side by side.
 * - a row without its object: lost content when paths point at it (the
 *   paths are reported), an orphan row otherwise;
 * - an object without a row, older than the grace period: an orphan;
 * - a count that is not the number of paths, a size that is not the object's;
 * - with `deep`, each object is read back: gzip, hashing to its key, of the
 *   recorded sizes.
 * Whatever looks wrong is read again before it is reported (writes go on
 * meanwhile). What is found wrong with an object is recorded on its row, so
 * the next PUT of that content restores it. With `repair`: counts are
 * recounted, sizes corrected, orphans removed (under the blob lock, as the
 * cleaner does), and lost content is given up: its paths are removed after
 * being reported. Nothing that paths point at is ever deleted.
 */
export class Fsck {
  private readonly now: () => number;

  constructor(private readonly o: FsckOptions) {
    this.now = o.now ?? Date.now;
  }

  async run(): Promise<FsckReport> {
    const report: FsckReport = {
      blobs: 0,
      objects: 0,
      lost: [],
      miscounted: [],
      sizeMismatches: [],
      orphanObjects: 0,
      orphanRows: 0,
      orphansRemoved: 0,
      totalsDrift: null,
    };
    const cutoff = this.now() - this.o.graceMs;
    const rows = this.rows(report);
    const objects = this.objects(report);
    let row = await rows.next();
    let object = await objects.next();
    const deep: Array<{ row: BlobRecord; object: BlobListing }> = [];
    while (!row.done || !object.done) {
      const r = row.done ? null : row.value;
      const o = object.done ? null : object.value;
      if (o && (!r || o.hash < r.hash)) {
        if (o.listing.lastModified.getTime() <= cutoff)
          await this.orphanObject(o.hash, o.listing, report);
        object = await objects.next();
      } else if (r && (!o || r.hash < o.hash)) {
        await this.rowWithoutObject(r, report);
        row = await rows.next();
      } else if (r && o) {
        if (o.listing.size !== r.storedSize) await this.sizeMismatch(r, report);
        else if (this.o.deep || r.damage === 'corrupt') {
          // A blob recorded as corrupt is read back even without --deep.
          deep.push({ row: r, object: o.listing });
          if (deep.length >= DEEP_CONCURRENCY) await this.verifyAll(deep.splice(0), report);
        } else if (r.damage === 'missing') {
          // Marked by a GET that found it gone, and listed here: put back since? Looked at again.
          const object = await this.o.blobs.stat(this.key(r.hash));
          if (object) await this.o.meta.markRestored(r.hash, object.size);
        }
        row = await rows.next();
        object = await objects.next();
      }
    }
    await this.verifyAll(deep, report);
    // Last, after the repairs above, whose row changes the kept totals follow.
    await this.checkTotals(report);
    return report;
  }

  /** The kept totals (/metrics) against the blob rows, read in one snapshot. */
  private async checkTotals(report: FsckReport): Promise<void> {
    const { kept, counted } = await this.o.meta.totalsBothWays();
    const keys = Object.keys(counted) as Array<keyof StoreTotals>;
    if (keys.every((k) => kept[k] === counted[k])) return;
    let repaired = false;
    if (this.o.repair) {
      await this.o.meta.resetKeptTotals();
      repaired = true;
    }
    report.totalsDrift = { kept, counted, repaired };
  }

  /** Blob rows by hash, page by page, counts checked a page at a time. */
  private async *rows(report: FsckReport): AsyncGenerator<BlobRecord> {
    let after: string | null = null;
    for (;;) {
      const page = await this.o.meta.listBlobs({ after, limit: PAGE });
      if (page.length === 0) return;
      after = page[page.length - 1]?.hash ?? null;
      const counts = await this.o.meta.countPaths(page.map((b) => b.hash));
      for (const blob of page) {
        if (!countsAgree(blob, counts.get(blob.hash) ?? 0)) await this.miscount(blob.hash, report);
        report.blobs++;
        this.o.onBlob?.();
        yield blob;
      }
    }
  }

  /** Objects under the blob layout, by key (= by hash). */
  private async *objects(
    report: FsckReport,
  ): AsyncGenerator<{ hash: string; listing: BlobListing }> {
    for await (const listing of this.o.blobs.list()) {
      const hash = hashOfKey(listing.key, this.o.keyDepth);
      if (hash === null) continue;
      report.objects++;
      yield { hash, listing };
    }
  }

  /** Read again in one statement: still wrong, or changed by a write meanwhile? */
  private async miscount(hash: string, report: FsckReport): Promise<void> {
    const now = await this.o.meta.referenceCount(hash);
    if (!now || countsAgree({ refcount: now.refcount, zeroSince: now.zeroSince }, now.paths))
      return;
    let repaired = false;
    if (this.o.repair) {
      await this.o.meta.recount(hash, this.now());
      repaired = true;
    }
    report.miscounted.push({ ...now, repaired });
  }

  private async rowWithoutObject(row: BlobRecord, report: FsckReport): Promise<void> {
    // Listed before the row was made, or deleted with its row by the cleaner since?
    if (await this.o.blobs.stat(this.key(row.hash))) return;
    const now = await this.o.meta.getBlob(row.hash);
    if (!now) return;
    const paths = await this.o.meta.pathsOf(row.hash, this.o.pathsPerBlob ?? 1000);
    if (paths.length === 0 && now.refcount === 0) {
      report.orphanRows++;
      if (this.o.repair && (await this.removeOrphanRow(row.hash))) report.orphansRemoved++;
      else if (now.damage !== 'missing') await this.o.meta.markDamage(row.hash, 'missing');
      return;
    }
    await this.lose(row.hash, 'missing', undefined, paths, report);
  }

  private async orphanObject(
    hash: string,
    listing: BlobListing,
    report: FsckReport,
  ): Promise<void> {
    if ((await this.o.meta.existingBlobs([hash])).has(hash)) return;
    report.orphanObjects++;
    if (!this.o.repair) return;
    const removed = await this.underBlobLock(hash, async () => {
      // As the cleaner does: a PUT may have recorded it since (it takes the lock to do so).
      if ((await this.o.meta.existingBlobs([hash])).has(hash)) return false;
      await this.o.blobs.delete(listing.key);
      return true;
    });
    if (removed) report.orphansRemoved++;
  }

  private async removeOrphanRow(hash: string): Promise<boolean> {
    return this.underBlobLock(hash, async () => {
      if (await this.o.blobs.stat(this.key(hash))) return false;
      // Only while still unreferenced: a PUT may have pointed a path at it since.
      return (await this.o.meta.deleteUnreferenced([hash], Number.MAX_SAFE_INTEGER)).length > 0;
    });
  }

  private async sizeMismatch(row: BlobRecord, report: FsckReport): Promise<void> {
    const object = await this.o.blobs.stat(this.key(row.hash));
    const now = await this.o.meta.getBlob(row.hash);
    if (!object || !now || object.size === now.storedSize) return;
    // The content decides: the same content in other gzip bytes (an S3 server
    // that let a second upload overwrite the first) is fine, with its size.
    const problem = await this.verify(now);
    if (problem) {
      const paths = await this.o.meta.pathsOf(row.hash, this.o.pathsPerBlob ?? 1000);
      await this.lose(row.hash, 'corrupt', problem, paths, report);
      return;
    }
    let repaired = false;
    if (this.o.repair) repaired = await this.o.meta.markRestored(row.hash, object.size);
    report.sizeMismatches.push({
      hash: row.hash,
      recorded: now.storedSize,
      actual: object.size,
      repaired,
    });
  }

  private async verifyAll(
    batch: Array<{ row: BlobRecord; object: BlobListing }>,
    report: FsckReport,
  ): Promise<void> {
    const problems = await Promise.all(batch.map(({ row }) => this.verify(row)));
    for (const [i, problem] of problems.entries()) {
      const entry = batch[i];
      if (!entry) continue;
      if (problem === null) {
        if (entry.row.damage !== null)
          await this.o.meta.markRestored(entry.row.hash, entry.object.size);
        continue;
      }
      if (problem === 'gone') continue;
      const paths = await this.o.meta.pathsOf(entry.row.hash, this.o.pathsPerBlob ?? 1000);
      await this.lose(entry.row.hash, 'corrupt', problem, paths, report);
    }
  }

  /**
   * Reads a blob's object back: null when it is gzip of content hashing to
   * its key with the recorded logical size; 'gone' when it (or its row)
   * went away meanwhile; otherwise what is wrong.
   */
  private async verify(row: BlobRecord): Promise<string | 'gone' | null> {
    const reader = await this.o.blobs.get(this.key(row.hash));
    if (!reader) return 'gone';
    const hash = createHash('sha256');
    let logical = 0;
    try {
      const body = Buffer.isBuffer(reader.body) ? Readable.from([reader.body]) : reader.body;
      await pipeline(body, createGunzip(), async (inflated: AsyncIterable<Buffer>) => {
        for await (const chunk of inflated) {
          hash.update(chunk);
          logical += chunk.length;
        }
      });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      if (!code.startsWith('Z_')) throw err;
      return `not gzip (${(err as Error).message})`;
    }
    const digest = hash.digest('hex');
    if (digest !== row.hash) return `content hashes to ${digest}`;
    if (logical !== row.logicalSize)
      return `${logical} bytes of content, ${row.logicalSize} recorded`;
    return null;
  }

  /**
   * Content found lost: recorded on its row first (so that PUTs of it from
   * now on restore it rather than point at it), reported with its paths, and
   * given up with --repair: under the blob's locks, where no PUT can point a
   * path at it or restore it meanwhile, it is looked at once more, and only
   * if still lost are its paths, row and (corrupt) object removed.
   */
  private async lose(
    hash: string,
    damage: 'missing' | 'corrupt',
    detail: string | undefined,
    paths: string[],
    report: FsckReport,
  ): Promise<void> {
    await this.o.meta.markDamage(hash, damage);
    const lost: LostBlob = { hash, damage, paths, pathCount: 0, dropped: false };
    if (detail) lost.detail = detail;
    if (!this.o.repair) {
      lost.pathCount = (await this.o.meta.referenceCount(hash))?.paths ?? paths.length;
      report.lost.push(lost);
      return;
    }
    const given = await this.underBlobLock(
      hash,
      async () => {
        const row = await this.o.meta.getBlob(hash);
        if (!row) return false;
        if (
          damage === 'missing'
            ? await this.o.blobs.stat(this.key(hash))
            : (await this.verify(row)) === null
        ) {
          return false; // restored meanwhile
        }
        // Exact under the lock: no path can be pointed at it now.
        lost.paths = await this.o.meta.pathsOf(hash, this.o.pathsPerBlob ?? 1000);
        lost.pathCount = await this.o.meta.dropBlob(hash);
        if (damage === 'corrupt') await this.o.blobs.delete(this.key(hash));
        lost.dropped = true;
        return true;
      },
      true,
    );
    if (given) report.lost.push(lost);
  }

  /**
   * Runs `fn` holding `blob:<hash>` exclusively (what the cleaner takes),
   * and with `commit` also `commit:<hash>` (no upload can make its object
   * visible meanwhile).
   */
  private async underBlobLock<T>(hash: string, fn: () => Promise<T>, commit = false): Promise<T> {
    const session = this.o.locks.session();
    const options = { timeoutMs: this.o.lockTimeoutMs };
    try {
      await session.acquire(`blob:${hash}`, 'exclusive', options);
      if (commit) await session.acquire(`commit:${hash}`, 'exclusive', options);
      return await fn();
    } finally {
      await session.end();
    }
  }

  private key(hash: string): string {
    return blobKey(hash, this.o.keyDepth);
  }
}

/** refcount is the number of paths, and zeroSince is set exactly when it is 0. */
function countsAgree(b: { refcount: number; zeroSince: number | null }, paths: number): boolean {
  return b.refcount === paths && (b.refcount === 0) === (b.zeroSince !== null);
}
