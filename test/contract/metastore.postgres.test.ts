import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { PostgresMetaStore } from '../../src/metastore/postgres.js';
import { createPool } from '../../src/postgres/pool.js';
import { createTestDatabase } from '../support/postgres.js';
import { blobCatalogContract } from './blob-catalog.contract.js';
import { type MetaStoreHarness, metaStoreContract } from './metastore.contract.js';

const logger = pino({ level: 'silent' });
const poolFor = (url: string, max = 5) =>
  createPool(
    {
      connectionString: url,
      max,
      queryTimeoutMs: 5000,
      connectTimeoutMs: 2000,
      applicationName: 'test',
    },
    logger,
  );

const postgresHarness = async (): Promise<MetaStoreHarness> => {
  const pool = poolFor(await createTestDatabase());
  return {
    open: () => PostgresMetaStore.open(pool),
    reset: async () => {
      await pool.query('DELETE FROM files; DELETE FROM blobs;');
    },
    sql: async (_store, statement) => {
      await pool.query(statement);
    },
    close: () => pool.end(),
  };
};

metaStoreContract('postgres', postgresHarness);
blobCatalogContract('postgres', postgresHarness);

describe('PostgresMetaStore specifics', () => {
  it('applies migrations exactly once when several instances start at the same time', async () => {
    const url = await createTestDatabase();
    const pools = Array.from({ length: 6 }, () => poolFor(url, 2));
    try {
      await Promise.all(pools.map((p) => PostgresMetaStore.open(p)));
      const { rows } = await (pools[0] as ReturnType<typeof poolFor>).query(
        'SELECT version FROM s3dedup_schema_migrations ORDER BY version',
      );
      expect(rows.map((r) => r.version)).toEqual([1, 2, 3]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it('an existing store upgraded to kept totals starts from its added-up figures', async () => {
    const pool = poolFor(await createTestDatabase());
    try {
      const store = await PostgresMetaStore.open(pool);
      await store.putFile({
        path: 'a',
        version: 1,
        blob: { hash: 'a'.repeat(64), logicalSize: 10, storedSize: 4 },
        now: 1,
      });
      await store.putFile({
        path: 'b',
        version: 1,
        blob: { hash: 'a'.repeat(64), logicalSize: 10, storedSize: 4 },
        now: 1,
      });
      // Back to schema 2, with its data, as a store written before migration 3.
      await pool.query(`DROP TRIGGER blobs_totals ON blobs; DROP FUNCTION s3dedup_count_blob();
        DROP TABLE store_totals; DROP TABLE store_total_changes;
        DELETE FROM s3dedup_schema_migrations WHERE version = 3`);
      const upgraded = await PostgresMetaStore.open(pool);
      expect(await upgraded.keptTotals()).toEqual(await upgraded.totals());
      expect((await upgraded.keptTotals()).files).toBe(2);
    } finally {
      await pool.end();
    }
  });

  it('refuses a schema newer than it knows', async () => {
    const pool = poolFor(await createTestDatabase());
    try {
      await PostgresMetaStore.open(pool);
      await pool.query('INSERT INTO s3dedup_schema_migrations (version) VALUES (99)');
      await expect(PostgresMetaStore.open(pool)).rejects.toThrow(/newer than this s3dedup knows/);
    } finally {
      await pool.end();
    }
  });

  it('lists a directory through the primary key index, not a table scan', async () => {
    const pool = poolFor(await createTestDatabase());
    try {
      const store = await PostgresMetaStore.open(pool);
      const blob = { hash: 'c'.repeat(64), logicalSize: 1, storedSize: 1 };
      await store.putFile({ path: 'seed', version: 1, blob, now: 1 });
      // Enough rows that the planner prefers the index when it can use it.
      await pool.query(
        `INSERT INTO files (path, hash, version, updated_at)
         SELECT 'dir' || (i % 100) || '/f' || i, $1, 1, 1 FROM generate_series(1, 20000) i`,
        [blob.hash],
      );
      await pool.query('ANALYZE files');
      const { rows } = await pool.query(
        `EXPLAIN SELECT path FROM files WHERE path > 'dir7/' AND path < 'dir70' AND version <= 5 ORDER BY path LIMIT 1000`,
      );
      const plan = rows.map((r) => r['QUERY PLAN']).join('\n');
      // An index scan or a bitmap index scan on the primary key: the cost follows the directory.
      expect(plan).toMatch(/Index Scan (using|on) files_pkey/);
      expect(plan).not.toMatch(/Seq Scan/);
    } finally {
      await pool.end();
    }
  });

  it('reports a database that is down as unavailable, never as absent', async () => {
    const pool = createPool(
      {
        connectionString: 'postgres://postgres@127.0.0.1:1/none',
        max: 1,
        queryTimeoutMs: 1000,
        connectTimeoutMs: 500,
        applicationName: 't',
      },
      logger,
    );
    const store = await Promise.resolve(PostgresMetaStore.open(pool)).catch((err) => err);
    expect(store).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    await pool.end();
  });
});
