import type pg from 'pg';
import { contentCollected, isAppError } from '../errors.js';
import { advisoryKey } from '../locks/keys.js';
import type { Logger } from '../observability/logger.js';
import { isRetryable, mapPgError } from '../postgres/pool.js';
import { CatalogForwarder } from './catalog.js';
import type {
  BlobRecord,
  DeleteFileResult,
  FileRecord,
  ListQuery,
  MetaStore,
  PutFileInput,
  PutFileResult,
} from './port.js';
import { PostgresCatalog } from './postgres-catalog.js';
import { prefixUpperBound } from './prefix.js';
import { type BlobRow, blobRecord, type FileRow, fileRecord } from './rows.js';

/**
 * Schema migrations, applied in order at start-up under an advisory lock, so
 * instances starting together apply each one exactly once. Append only.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE blobs (
    hash         text   PRIMARY KEY,
    refcount     bigint NOT NULL CHECK (refcount >= 0),
    logical_size bigint NOT NULL,
    stored_size  bigint NOT NULL,
    zero_since   bigint,                 -- ms since epoch, set while refcount = 0
    created_at   bigint NOT NULL
  );
  -- The cleaner looks for unreferenced blobs; keep that cheap however many blobs there are.
  CREATE INDEX blobs_unreferenced ON blobs (zero_since) WHERE refcount = 0;

  -- COLLATE "C" compares bytes: the order /list promises (UTF-8 bytewise), and
  -- what lets "path > $1 AND path < $2" walk a directory through the primary
  -- key's btree, costing the directory's size rather than the table's.
  CREATE TABLE files (
    path       text   COLLATE "C" PRIMARY KEY,
    hash       text   NOT NULL REFERENCES blobs (hash),
    version    bigint NOT NULL,
    updated_at bigint NOT NULL
  );
  CREATE INDEX files_hash ON files (hash);
  `,
  // What a read, fsck or the cleaner found wrong with a blob's object, until
  // a PUT of its content stores it again; the cleaner walks unreferenced
  // blobs oldest first, by (zero_since, hash) (issue #11).
  `
  ALTER TABLE blobs ADD COLUMN damage text CHECK (damage IN ('missing', 'corrupt'));
  DROP INDEX blobs_unreferenced;
  CREATE INDEX blobs_unreferenced ON blobs (zero_since, hash) WHERE refcount = 0;
  `,
  // The store's totals, kept by a trigger in the same transactions as the
  // blob rows they add up, so /metrics does not read the blobs table (issue
  // #13). The trigger only appends a row of differences: a shared counter
  // row would make every PUT wait for the others' commits, and a
  // transaction changing two blobs could deadlock with another on it. A
  // reader folds the differences into store_totals (keptTotals()).
  `
  -- Writers of older instances wait until the trigger exists: none is missed.
  LOCK TABLE blobs IN SHARE ROW EXCLUSIVE MODE;
  CREATE TABLE store_totals (
    files                bigint NOT NULL,
    logical_bytes        bigint NOT NULL,
    blobs                bigint NOT NULL,
    unique_logical_bytes bigint NOT NULL,
    stored_bytes         bigint NOT NULL
  );
  INSERT INTO store_totals
    SELECT coalesce(sum(refcount), 0), coalesce(sum(refcount * logical_size), 0), count(*),
           coalesce(sum(logical_size) FILTER (WHERE refcount > 0), 0), coalesce(sum(stored_size), 0)
      FROM blobs;
  CREATE TABLE store_total_changes (
    files                bigint NOT NULL,
    logical_bytes        bigint NOT NULL,
    blobs                bigint NOT NULL,
    unique_logical_bytes bigint NOT NULL,
    stored_bytes         bigint NOT NULL
  );
  CREATE FUNCTION s3dedup_count_blob() RETURNS trigger LANGUAGE plpgsql AS $$
  DECLARE
    d_files bigint := 0;
    d_logical bigint := 0;
    d_blobs bigint := 0;
    d_unique bigint := 0;
    d_stored bigint := 0;
  BEGIN
    IF TG_OP <> 'INSERT' THEN
      d_files := d_files - OLD.refcount;
      d_logical := d_logical - OLD.refcount * OLD.logical_size;
      d_blobs := d_blobs - 1;
      d_unique := d_unique - CASE WHEN OLD.refcount > 0 THEN OLD.logical_size ELSE 0 END;
      d_stored := d_stored - OLD.stored_size;
    END IF;
    IF TG_OP <> 'DELETE' THEN
      d_files := d_files + NEW.refcount;
      d_logical := d_logical + NEW.refcount * NEW.logical_size;
      d_blobs := d_blobs + 1;
      d_unique := d_unique + CASE WHEN NEW.refcount > 0 THEN NEW.logical_size ELSE 0 END;
      d_stored := d_stored + NEW.stored_size;
    END IF;
    -- zero_since or damage alone changes no total.
    IF d_files <> 0 OR d_logical <> 0 OR d_blobs <> 0 OR d_unique <> 0 OR d_stored <> 0 THEN
      INSERT INTO store_total_changes VALUES (d_files, d_logical, d_blobs, d_unique, d_stored);
    END IF;
    RETURN NULL;
  END $$;
  CREATE TRIGGER blobs_totals AFTER INSERT OR UPDATE OR DELETE ON blobs
    FOR EACH ROW EXECUTE FUNCTION s3dedup_count_blob();
  `,
];

const MIGRATION_LOCK = advisoryKey('schema-migrations');
/** Attempts of a transaction that PostgreSQL aborted as a deadlock or serialization victim. */
const TX_ATTEMPTS = 5;

/** Metadata in PostgreSQL (KVSTORAGE_TYPE=postgres), shared by every instance. */
export class PostgresMetaStore extends CatalogForwarder implements MetaStore {
  // The cleaner's, fsck's and stats' queries (src/metastore/postgres-catalog.ts).
  protected readonly catalog = new PostgresCatalog(
    (doing, sql, params) => this.query(doing, sql, params),
    (doing, fn) => this.transaction(doing, fn),
  );

  private constructor(private readonly pool: pg.Pool) {
    super();
  }

  /**
   * Applies pending migrations (safely, when several instances start at once)
   * and returns the store. A database that is not reachable yet (everything
   * starting together) is retried until `waitMs` has passed.
   */
  static async open(
    pool: pg.Pool,
    options: { waitMs?: number; logger?: Logger } = {},
  ): Promise<PostgresMetaStore> {
    const store = new PostgresMetaStore(pool);
    const until = Date.now() + (options.waitMs ?? 0);
    for (let attempt = 1; ; attempt++) {
      try {
        await store.migrate();
        return store;
      } catch (err) {
        if (!isAppError(err, 'BACKEND_UNAVAILABLE') || Date.now() > until) throw err;
        options.logger?.warn(
          { attempt, err: err.message },
          'PostgreSQL not reachable yet; retrying',
        );
        await new Promise((r) => setTimeout(r, Math.min(2000, 200 * attempt)));
      }
    }
  }

  private async migrate(): Promise<void> {
    const client = await this.connect('connecting for migrations');
    try {
      await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
      try {
        await client.query(
          'CREATE TABLE IF NOT EXISTS s3dedup_schema_migrations (version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())',
        );
        const { rows } = await client.query<{ v: number | null }>(
          'SELECT max(version) AS v FROM s3dedup_schema_migrations',
        );
        const current = rows[0]?.v ?? 0;
        if (current > MIGRATIONS.length) {
          throw new Error(
            `database schema version ${current} is newer than this s3dedup knows (${MIGRATIONS.length}); upgrade s3dedup`,
          );
        }
        for (let v = current; v < MIGRATIONS.length; v++) {
          await client.query('BEGIN');
          try {
            await client.query(MIGRATIONS[v] as string);
            await client.query('INSERT INTO s3dedup_schema_migrations (version) VALUES ($1)', [
              v + 1,
            ]);
            await client.query('COMMIT');
          } catch (err) {
            await client.query('ROLLBACK').catch(() => {});
            throw err;
          }
        }
      } finally {
        await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => {});
      }
    } finally {
      client.release();
    }
  }

  async getFile(path: string): Promise<FileRecord | null> {
    const { rows } = await this.query<FileRow>(
      'reading a file',
      `SELECT f.path, f.hash, f.version, b.logical_size, b.stored_size
         FROM files f JOIN blobs b ON b.hash = f.hash WHERE f.path = $1`,
      [path],
    );
    const row = rows[0];
    return row ? fileRecord(row) : null;
  }

  async getBlob(hash: string): Promise<BlobRecord | null> {
    const { rows } = await this.query<BlobRow>(
      'reading a blob',
      'SELECT hash, refcount, logical_size, stored_size, zero_since, damage FROM blobs WHERE hash = $1',
      [hash],
    );
    const row = rows[0];
    return row ? blobRecord(row) : null;
  }

  async putFile(input: PutFileInput): Promise<PutFileResult> {
    const { path, version, blob, now } = input;
    return this.transaction('storing a file', async (c) => {
      if (blob.known) {
        // FOR KEY SHARE: the row cannot be deleted under us until we commit.
        const { rowCount } = await c.query('SELECT 1 FROM blobs WHERE hash = $1 FOR KEY SHARE', [
          blob.hash,
        ]);
        if (rowCount === 0) throw contentCollected(blob.hash);
      } else {
        await c.query(
          `INSERT INTO blobs (hash, refcount, logical_size, stored_size, zero_since, created_at)
           VALUES ($1, 0, $2, $3, $4, $4) ON CONFLICT (hash) DO NOTHING`,
          [blob.hash, blob.logicalSize, blob.storedSize, now],
        );
      }
      // A new path is inserted outright; an existing one is locked (FOR UPDATE)
      // and compared. Inserting first makes two transactions creating the same
      // path queue on the unique index instead of both reading "absent".
      const inserted = await c.query(
        `INSERT INTO files (path, hash, version, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (path) DO NOTHING`,
        [path, blob.hash, version, now],
      );
      if (inserted.rowCount === 1) {
        await adjust(c, [[blob.hash, +1]], now);
        return { applied: true, version };
      }
      const { rows } = await c.query<{ hash: string; version: number }>(
        'SELECT hash, version FROM files WHERE path = $1 FOR UPDATE',
        [path],
      );
      const current = rows[0];
      if (!current) throw new Error(`file ${path} vanished inside its transaction`);
      if (current.version > version) return { applied: false, version: current.version };
      await c.query('UPDATE files SET hash = $2, version = $3, updated_at = $4 WHERE path = $1', [
        path,
        blob.hash,
        version,
        now,
      ]);
      if (current.hash !== blob.hash) {
        await adjust(
          c,
          [
            [blob.hash, +1],
            [current.hash, -1],
          ],
          now,
        );
      }
      return { applied: true, version };
    });
  }

  async deleteFile(input: {
    path: string;
    version: number;
    now: number;
  }): Promise<DeleteFileResult> {
    return this.transaction('deleting a file', async (c) => {
      const { rows } = await c.query<{ hash: string; version: number }>(
        'SELECT hash, version FROM files WHERE path = $1 FOR UPDATE',
        [input.path],
      );
      const current = rows[0];
      if (!current) return { outcome: 'absent' as const };
      if (current.version > input.version)
        return { outcome: 'kept' as const, version: current.version };
      await c.query('DELETE FROM files WHERE path = $1', [input.path]);
      await adjust(c, [[current.hash, -1]], input.now);
      return { outcome: 'deleted' as const, version: current.version };
    });
  }

  async listFiles(query: ListQuery): Promise<string[]> {
    const after = query.after ?? query.prefix;
    const upper = prefixUpperBound(query.prefix);
    const { rows } =
      upper === null
        ? await this.query<{ path: string }>(
            'listing files',
            'SELECT path FROM files WHERE path > $1 AND version <= $2 ORDER BY path LIMIT $3',
            [after, query.maxVersion, query.limit],
          )
        : await this.query<{ path: string }>(
            'listing files',
            'SELECT path FROM files WHERE path > $1 AND path < $2 AND version <= $3 ORDER BY path LIMIT $4',
            [after, upper, query.maxVersion, query.limit],
          );
    return rows.map((r) => r.path);
  }

  async check(): Promise<void> {
    await this.query('checking the database', 'SELECT 1');
  }

  async close(): Promise<void> {
    // The pool is owned by whoever created it (it may be shared).
  }

  /** For tests and fsck: run a query directly. */
  async raw<R extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.query<R>('running a query', sql, params)).rows;
  }

  private async query<R extends pg.QueryResultRow>(
    doing: string,
    sql: string,
    params: unknown[] = [],
  ): Promise<pg.QueryResult<R>> {
    try {
      return await this.pool.query<R>(sql, params);
    } catch (err) {
      throw mapPgError(err, 'database', doing);
    }
  }

  private async connect(doing: string): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw mapPgError(err, 'database', doing);
    }
  }

  /**
   * Runs `fn` in one transaction (READ COMMITTED, with row locks where it
   * reads before writing). A deadlock or serialization victim is retried;
   * any other failure rolls back and propagates.
   */
  private async transaction<T>(
    doing: string,
    fn: (client: pg.PoolClient) => Promise<T>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const client = await this.connect(doing);
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await client.query('ROLLBACK').catch((e: Error) => {
          broken = e;
        });
        if (isRetryable(err) && attempt < TX_ATTEMPTS) continue;
        throw mapPgError(err, 'database', doing);
      } finally {
        // A connection whose ROLLBACK failed is not reusable.
        client.release(broken);
      }
    }
  }
}

/**
 * Applies reference count changes in hash order, so two transactions touching
 * the same blobs lock their rows in the same order and cannot deadlock.
 */
async function adjust(c: pg.PoolClient, changes: [string, number][], now: number): Promise<void> {
  const sorted = [...changes].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (const [hash, delta] of sorted) {
    if (delta > 0) {
      await c.query('UPDATE blobs SET refcount = refcount + 1, zero_since = NULL WHERE hash = $1', [
        hash,
      ]);
    } else {
      await c.query(
        `UPDATE blobs SET refcount = refcount - 1,
                          zero_since = CASE WHEN refcount = 1 THEN $2 ELSE zero_since END
         WHERE hash = $1`,
        [hash, now],
      );
    }
  }
}
