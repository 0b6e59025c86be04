import type Database from 'better-sqlite3';
import type { BlobCatalog, BlobDamage, BlobRecord, Miscount, Page, StoreTotals } from './port.js';
import { type BlobRow, blobRecord, storeTotals, type TotalsRow } from './rows.js';

/** The store's totals added up from the blob rows. Counts are exact (SPEC §3), so the paths' bytes are refcount x size: no join. */
const ADD_UP = `SELECT coalesce(sum(refcount), 0) AS files,
        coalesce(sum(refcount * logical_size), 0) AS logical,
        count(*) AS blobs,
        coalesce(sum(CASE WHEN refcount > 0 THEN logical_size ELSE 0 END), 0) AS unique_logical,
        coalesce(sum(stored_size), 0) AS stored
   FROM blobs`;

/** The blob columns every query here reads. */
const BLOB = 'hash, refcount, logical_size, stored_size, zero_since, damage';

/**
 * The BlobCatalog part of the SQLite store (src/metastore/sqlite.ts): the
 * queries of the cleaner, fsck and stats. Reads go through `read` (retried
 * while another process holds the database), changes through `write` (the
 * store's group commit: on disk before they resolve).
 */
export class SqliteCatalog implements BlobCatalog {
  private readonly q;

  constructor(
    db: Database.Database,
    private readonly read: <T>(query: () => T) => Promise<T>,
    private readonly write: <T>(change: () => T) => Promise<T>,
  ) {
    this.q = {
      unreferenced: db.prepare<[number, number, number, string, number], BlobRow>(
        `SELECT ${BLOB} FROM blobs
          WHERE refcount = 0 AND zero_since <= ?
            AND (zero_since > ? OR (zero_since = ? AND hash > ?))
          ORDER BY zero_since, hash LIMIT ?`,
      ),
      deleteUnreferenced: db.prepare<[string, number], BlobRow>(
        // NOT EXISTS: a count gone wrong (paths, yet refcount 0) must cost that
        // blob alone its turn (fsck recounts it), not every run its cleaning.
        `DELETE FROM blobs WHERE hash = ? AND refcount = 0 AND zero_since <= ?
           AND NOT EXISTS (SELECT 1 FROM files f WHERE f.hash = blobs.hash) RETURNING ${BLOB}`,
      ),
      existing: db.prepare<[string], { hash: string }>(
        'SELECT hash FROM blobs WHERE hash IN (SELECT value FROM json_each(?))',
      ),
      blobs: db.prepare<[string, number], BlobRow>(
        `SELECT ${BLOB} FROM blobs WHERE hash > ? ORDER BY hash LIMIT ?`,
      ),
      countPaths: db.prepare<[string], { hash: string; paths: number }>(
        `SELECT hash, count(*) AS paths FROM files
          WHERE hash IN (SELECT value FROM json_each(?)) GROUP BY hash`,
      ),
      referenceCount: db.prepare<
        [string],
        { hash: string; refcount: number; zero_since: number | null; paths: number }
      >(
        `SELECT hash, refcount, zero_since, (SELECT count(*) FROM files f WHERE f.hash = b.hash) AS paths
           FROM blobs b WHERE hash = ?`,
      ),
      recount: db.prepare<{ hash: string; now: number }>(
        `UPDATE blobs SET
           refcount = (SELECT count(*) FROM files f WHERE f.hash = @hash),
           zero_since = CASE WHEN (SELECT count(*) FROM files f WHERE f.hash = @hash) = 0
                             THEN coalesce(zero_since, @now) ELSE NULL END
         WHERE hash = @hash`,
      ),
      pathsOf: db.prepare<[string, number], { path: string }>(
        'SELECT path FROM files WHERE hash = ? ORDER BY path LIMIT ?',
      ),
      markDamage: db.prepare<[BlobDamage | null, string]>(
        'UPDATE blobs SET damage = ? WHERE hash = ?',
      ),
      markRestored: db.prepare<[number, string]>(
        'UPDATE blobs SET damage = NULL, stored_size = ? WHERE hash = ?',
      ),
      dropFiles: db.prepare<[string]>('DELETE FROM files WHERE hash = ?'),
      dropBlob: db.prepare<[string]>('DELETE FROM blobs WHERE hash = ?'),
      keptTotals: db.prepare<[], TotalsRow>(
        `SELECT files, logical_bytes AS logical, blobs, unique_logical_bytes AS unique_logical,
                stored_bytes AS stored
           FROM store_totals`,
      ),
      totals: db.prepare<[], TotalsRow>(ADD_UP),
      resetKept: db.prepare(
        `UPDATE store_totals
            SET (files, logical_bytes, blobs, unique_logical_bytes, stored_bytes) =
                (SELECT files, logical, blobs, unique_logical, stored FROM (${ADD_UP}))`,
      ),
    };
    this.bothTx = db.transaction(() => [this.q.keptTotals.get(), this.q.totals.get()] as const);
    this.dropTx = db.transaction((hash: string) => {
      const removed = this.q.dropFiles.run(hash).changes;
      this.q.dropBlob.run(hash);
      return removed;
    });
    this.deleteTx = db.transaction((hashes: string[], before: number) =>
      hashes.flatMap((hash) => {
        const row = this.q.deleteUnreferenced.get(hash, before);
        return row ? [blobRecord(row)] : [];
      }),
    );
  }

  private readonly bothTx;
  private readonly dropTx;
  private readonly deleteTx;

  async listUnreferenced(query: {
    before: number;
    after: { zeroSince: number; hash: string } | null;
    limit: number;
  }): Promise<BlobRecord[]> {
    const after = query.after ?? { zeroSince: Number.MIN_SAFE_INTEGER, hash: '' };
    const rows = await this.read(() =>
      this.q.unreferenced.all(
        query.before,
        after.zeroSince,
        after.zeroSince,
        after.hash,
        query.limit,
      ),
    );
    return rows.map(blobRecord);
  }

  deleteUnreferenced(hashes: string[], before: number): Promise<BlobRecord[]> {
    return this.write(() => this.deleteTx(hashes, before));
  }

  async existingBlobs(hashes: string[]): Promise<Set<string>> {
    const rows = await this.read(() => this.q.existing.all(JSON.stringify(hashes)));
    return new Set(rows.map((r) => r.hash));
  }

  async listBlobs(page: Page): Promise<BlobRecord[]> {
    const rows = await this.read(() => this.q.blobs.all(page.after ?? '', page.limit));
    return rows.map(blobRecord);
  }

  async countPaths(hashes: string[]): Promise<Map<string, number>> {
    const rows = await this.read(() => this.q.countPaths.all(JSON.stringify(hashes)));
    return new Map(rows.map((r) => [r.hash, r.paths]));
  }

  async referenceCount(hash: string): Promise<Miscount | null> {
    const row = await this.read(() => this.q.referenceCount.get(hash));
    return row
      ? { hash: row.hash, refcount: row.refcount, paths: row.paths, zeroSince: row.zero_since }
      : null;
  }

  async recount(hash: string, now: number): Promise<void> {
    await this.write(() => this.q.recount.run({ hash, now }));
  }

  async pathsOf(hash: string, limit: number): Promise<string[]> {
    const rows = await this.read(() => this.q.pathsOf.all(hash, limit));
    return rows.map((r) => r.path);
  }

  async markDamage(hash: string, damage: BlobDamage | null): Promise<void> {
    await this.write(() => this.q.markDamage.run(damage, hash));
  }

  async markRestored(hash: string, storedSize: number): Promise<boolean> {
    const { changes } = await this.write(() => this.q.markRestored.run(storedSize, hash));
    return changes === 1;
  }

  dropBlob(hash: string): Promise<number> {
    return this.write(() => this.dropTx(hash));
  }

  async keptTotals(): Promise<StoreTotals> {
    return storeTotals(await this.read(() => this.q.keptTotals.get()));
  }

  async totals(): Promise<StoreTotals> {
    return storeTotals(await this.read(() => this.q.totals.get()));
  }

  async totalsBothWays(): Promise<{ kept: StoreTotals; counted: StoreTotals }> {
    // One read transaction: one snapshot, whatever another process writes.
    const [kept, counted] = await this.read(() => this.bothTx());
    return { kept: storeTotals(kept), counted: storeTotals(counted) };
  }

  async resetKeptTotals(): Promise<void> {
    await this.write(() => this.q.resetKept.run());
  }
}
