import type pg from 'pg';
import type { BlobCatalog, BlobDamage, BlobRecord, Miscount, Page, StoreTotals } from './port.js';
import { type BlobRow, blobRecord, storeTotals, type TotalsRow } from './rows.js';

/** The store's totals added up from the blob rows. Counts are exact (SPEC §3), so the paths' bytes are refcount x size: no join. */
const ADD_UP = `SELECT coalesce(sum(refcount), 0)::bigint AS files,
        coalesce(sum(refcount * logical_size), 0)::bigint AS logical,
        count(*)::bigint AS blobs,
        coalesce(sum(logical_size) FILTER (WHERE refcount > 0), 0)::bigint AS unique_logical,
        coalesce(sum(stored_size), 0)::bigint AS stored
   FROM blobs`;

/** The blob columns every query here reads. */
const BLOB = 'hash, refcount, logical_size, stored_size, zero_since, damage';

type Query = <R extends pg.QueryResultRow>(
  doing: string,
  sql: string,
  params?: unknown[],
) => Promise<pg.QueryResult<R>>;
type Transaction = <T>(doing: string, fn: (client: pg.PoolClient) => Promise<T>) => Promise<T>;

/**
 * The BlobCatalog part of the PostgreSQL store (src/metastore/postgres.ts):
 * the queries of the cleaner, fsck and stats, each one statement or one
 * transaction of the store's.
 */
export class PostgresCatalog implements BlobCatalog {
  constructor(
    private readonly query: Query,
    private readonly transaction: Transaction,
  ) {}

  async listUnreferenced(q: {
    before: number;
    after: { zeroSince: number; hash: string } | null;
    limit: number;
  }): Promise<BlobRecord[]> {
    const after = q.after ?? { zeroSince: Number.MIN_SAFE_INTEGER, hash: '' };
    const { rows } = await this.query<BlobRow>(
      'listing unreferenced blobs',
      `SELECT ${BLOB} FROM blobs
        WHERE refcount = 0 AND zero_since <= $1 AND (zero_since, hash) > ($2, $3)
        ORDER BY zero_since, hash LIMIT $4`,
      [q.before, after.zeroSince, after.hash, q.limit],
    );
    return rows.map(blobRecord);
  }

  async deleteUnreferenced(hashes: string[], before: number): Promise<BlobRecord[]> {
    const { rows } = await this.query<BlobRow>(
      'deleting unreferenced blobs',
      // NOT EXISTS: a count gone wrong (paths, yet refcount 0) must cost that
      // blob alone its turn (fsck recounts it), not every run its cleaning.
      `DELETE FROM blobs WHERE hash = ANY($1) AND refcount = 0 AND zero_since <= $2
         AND NOT EXISTS (SELECT 1 FROM files f WHERE f.hash = blobs.hash) RETURNING ${BLOB}`,
      [hashes, before],
    );
    return rows.map(blobRecord);
  }

  async existingBlobs(hashes: string[]): Promise<Set<string>> {
    const { rows } = await this.query<{ hash: string }>(
      'looking up blobs',
      'SELECT hash FROM blobs WHERE hash = ANY($1)',
      [hashes],
    );
    return new Set(rows.map((r) => r.hash));
  }

  async listBlobs(page: Page): Promise<BlobRecord[]> {
    const { rows } = await this.query<BlobRow>(
      'listing blobs',
      `SELECT ${BLOB} FROM blobs WHERE hash > $1 ORDER BY hash LIMIT $2`,
      [page.after ?? '', page.limit],
    );
    return rows.map(blobRecord);
  }

  async countPaths(hashes: string[]): Promise<Map<string, number>> {
    const { rows } = await this.query<{ hash: string; paths: number }>(
      'counting paths',
      'SELECT hash, count(*)::bigint AS paths FROM files WHERE hash = ANY($1) GROUP BY hash',
      [hashes],
    );
    return new Map(rows.map((r) => [r.hash, r.paths]));
  }

  async referenceCount(hash: string): Promise<Miscount | null> {
    const { rows } = await this.query<{
      hash: string;
      refcount: number;
      zero_since: number | null;
      paths: number;
    }>(
      'counting references',
      `SELECT hash, refcount, zero_since,
              (SELECT count(*) FROM files f WHERE f.hash = b.hash)::bigint AS paths
         FROM blobs b WHERE hash = $1`,
      [hash],
    );
    const row = rows[0];
    return row
      ? { hash: row.hash, refcount: row.refcount, paths: row.paths, zeroSince: row.zero_since }
      : null;
  }

  async recount(hash: string, now: number): Promise<void> {
    await this.transaction('recounting references', async (c) => {
      // The row first, then the count: a PUT or DELETE of a path of this blob
      // locks the same row, so the count cannot change under us.
      await c.query('SELECT 1 FROM blobs WHERE hash = $1 FOR UPDATE', [hash]);
      await c.query(
        `UPDATE blobs SET refcount = n.paths,
                          zero_since = CASE WHEN n.paths = 0 THEN coalesce(zero_since, $2) ELSE NULL END
           FROM (SELECT count(*) AS paths FROM files WHERE hash = $1) n
          WHERE hash = $1`,
        [hash, now],
      );
    });
  }

  async pathsOf(hash: string, limit: number): Promise<string[]> {
    const { rows } = await this.query<{ path: string }>(
      'listing paths of a blob',
      'SELECT path FROM files WHERE hash = $1 ORDER BY path LIMIT $2',
      [hash, limit],
    );
    return rows.map((r) => r.path);
  }

  async markDamage(hash: string, damage: BlobDamage | null): Promise<void> {
    await this.query('marking a blob', 'UPDATE blobs SET damage = $2 WHERE hash = $1', [
      hash,
      damage,
    ]);
  }

  async markRestored(hash: string, storedSize: number): Promise<boolean> {
    const { rowCount } = await this.query(
      'marking a blob restored',
      'UPDATE blobs SET damage = NULL, stored_size = $2 WHERE hash = $1',
      [hash, storedSize],
    );
    return rowCount === 1;
  }

  dropBlob(hash: string): Promise<number> {
    return this.transaction('dropping a lost blob', async (c) => {
      await c.query('SELECT 1 FROM blobs WHERE hash = $1 FOR UPDATE', [hash]);
      const { rowCount } = await c.query('DELETE FROM files WHERE hash = $1', [hash]);
      await c.query('DELETE FROM blobs WHERE hash = $1', [hash]);
      return rowCount ?? 0;
    });
  }

  async keptTotals(): Promise<StoreTotals> {
    const { rows } = await this.query<TotalsRow>(
      'reading the kept totals',
      // Folds the differences the trigger appended into the one totals row,
      // and answers with the result. Two readers at once: the second's DELETE
      // waits for the first's rows and skips them once they are gone.
      `WITH taken AS (DELETE FROM store_total_changes RETURNING *),
            change AS (SELECT coalesce(sum(files), 0) AS files,
                              coalesce(sum(logical_bytes), 0) AS logical,
                              coalesce(sum(blobs), 0) AS blobs,
                              coalesce(sum(unique_logical_bytes), 0) AS unique_logical,
                              coalesce(sum(stored_bytes), 0) AS stored
                         FROM taken)
       UPDATE store_totals t
          SET files = t.files + change.files,
              logical_bytes = t.logical_bytes + change.logical,
              blobs = t.blobs + change.blobs,
              unique_logical_bytes = t.unique_logical_bytes + change.unique_logical,
              stored_bytes = t.stored_bytes + change.stored
         FROM change
       RETURNING t.files::bigint AS files, t.logical_bytes::bigint AS logical, t.blobs::bigint AS blobs,
                 t.unique_logical_bytes::bigint AS unique_logical, t.stored_bytes::bigint AS stored`,
    );
    return storeTotals(rows[0]);
  }

  async totals(): Promise<StoreTotals> {
    const { rows } = await this.query<TotalsRow>('adding up the store', ADD_UP);
    return storeTotals(rows[0]);
  }

  totalsBothWays(): Promise<{ kept: StoreTotals; counted: StoreTotals }> {
    return this.transaction('comparing the kept totals', async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
      return this.bothWays(c);
    });
  }

  async resetKeptTotals(): Promise<void> {
    await this.transaction('correcting the kept totals', async (c) => {
      await c.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      const { kept, counted } = await this.bothWays(c);
      // The difference as of this snapshot, appended as one more change row:
      // writes committed meanwhile are in rows of their own, and folding
      // keeps store_totals + the change rows' sum unchanged. No lock: writers
      // go on while the blob rows are added up.
      await c.query(
        `INSERT INTO store_total_changes
           (files, logical_bytes, blobs, unique_logical_bytes, stored_bytes)
         VALUES ($1, $2, $3, $4, $5)`,
        [
          counted.files - kept.files,
          counted.logicalBytes - kept.logicalBytes,
          counted.blobs - kept.blobs,
          counted.uniqueLogicalBytes - kept.uniqueLogicalBytes,
          counted.storedBytes - kept.storedBytes,
        ],
      );
    });
  }

  /**
   * Both figures in the caller's REPEATABLE READ snapshot: the trigger writes
   * its change rows in the transactions that change the blobs, so the two
   * agree unless the kept ones drifted. Adds up every blob row (bounded by
   * POSTGRES_QUERY_TIMEOUT, like every query).
   */
  private async bothWays(c: pg.PoolClient): Promise<{ kept: StoreTotals; counted: StoreTotals }> {
    const kept = await c.query<TotalsRow>(
      `SELECT t.files + coalesce(sum(d.files), 0) AS files,
              t.logical_bytes + coalesce(sum(d.logical_bytes), 0) AS logical,
              t.blobs + coalesce(sum(d.blobs), 0) AS blobs,
              t.unique_logical_bytes + coalesce(sum(d.unique_logical_bytes), 0) AS unique_logical,
              t.stored_bytes + coalesce(sum(d.stored_bytes), 0) AS stored
         FROM store_totals t LEFT JOIN store_total_changes d ON true
        GROUP BY t.files, t.logical_bytes, t.blobs, t.unique_logical_bytes, t.stored_bytes`,
    );
    const counted = await c.query<TotalsRow>(ADD_UP);
    return { kept: storeTotals(kept.rows[0]), counted: storeTotals(counted.rows[0]) };
  }
}
