import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/metastore/sqlite.js';
import { makeTempDir } from '../support/tmp.js';
import { blobCatalogContract } from './blob-catalog.contract.js';
import { type MetaStoreHarness, metaStoreContract } from './metastore.contract.js';

const sqliteHarness = async (): Promise<MetaStoreHarness> => {
  const dir = await makeTempDir();
  return {
    open: async () => new SqliteMetaStore({ path: join(dir.path, 'nested', 'kv.db') }),
    reset: async (store) => {
      (store as SqliteMetaStore).database.exec('DELETE FROM files; DELETE FROM blobs;');
    },
    sql: async (store, statement) => {
      (store as SqliteMetaStore).database.exec(statement);
    },
    close: dir.remove,
  };
};

metaStoreContract('sqlite', sqliteHarness);
blobCatalogContract('sqlite', sqliteHarness);

/**
 * Runs `test` on a store (50 ms busy timeout) whose database another
 * connection holds with an exclusive transaction until `unlock` is called.
 */
async function withDatabaseLockedByAnother(
  test: (store: SqliteMetaStore, unlock: () => void) => Promise<void>,
): Promise<void> {
  const dir = await makeTempDir();
  try {
    const path = join(dir.path, 'kv.db');
    const store = new SqliteMetaStore({ path, busyTimeoutMs: 50 });
    const other = new Database(path);
    other.exec('BEGIN EXCLUSIVE');
    await test(store, () => {
      other.exec('ROLLBACK');
      other.close();
    });
  } finally {
    await dir.remove();
  }
}

describe('SqliteMetaStore specifics', () => {
  it('an existing store upgraded to kept totals starts from its added-up figures', async () => {
    const dir = await makeTempDir();
    try {
      const path = join(dir.path, 'kv.db');
      const store = new SqliteMetaStore({ path });
      const blob = { hash: 'a'.repeat(64), logicalSize: 10, storedSize: 4 };
      await store.putFile({ path: 'a', version: 1, blob, now: 1 });
      await store.putFile({ path: 'b', version: 1, blob, now: 1 });
      // Back to schema 2, with its data, as a store written before migration 3.
      store.database.exec(`DROP TRIGGER blobs_totals_insert; DROP TRIGGER blobs_totals_delete;
        DROP TRIGGER blobs_totals_update; DROP TABLE store_totals; PRAGMA user_version = 2;`);
      await store.close();
      const upgraded = new SqliteMetaStore({ path });
      try {
        expect(await upgraded.keptTotals()).toEqual(await upgraded.totals());
        expect((await upgraded.keptTotals()).files).toBe(2);
      } finally {
        await upgraded.close();
      }
    } finally {
      await dir.remove();
    }
  });

  it('creates its schema once and refuses a newer one', async () => {
    const dir = await makeTempDir();
    try {
      const path = join(dir.path, 'kv.db');
      const first = new SqliteMetaStore({ path });
      await first.putFile({
        path: 'x',
        version: 1,
        blob: { hash: 'a'.repeat(64), logicalSize: 1, storedSize: 2 },
        now: 1,
      });
      await first.close();
      // Reopening keeps data (migrations are not re-run).
      const second = new SqliteMetaStore({ path });
      expect((await second.getFile('x'))?.version).toBe(1);
      await second.close();
      const raw = new Database(path);
      raw.pragma('user_version = 99');
      raw.close();
      expect(() => new SqliteMetaStore({ path })).toThrow(/newer than this s3dedup knows/);
    } finally {
      await dir.remove();
    }
  });

  it('reports a database locked by another process as unavailable, not as absent', async () => {
    await withDatabaseLockedByAnother(async (store, unlock) => {
      await expect(
        store.putFile({
          path: 'x',
          version: 1,
          blob: { hash: 'a'.repeat(64), logicalSize: 1, storedSize: 2 },
          now: 1,
        }),
      ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      unlock();
      await store.close();
      await expect(store.getFile('x')).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    });
  });

  // Changes requested in one turn of the event loop are committed together
  // (src/metastore/sqlite.ts, group commit).
  const a = (c: string) => ({ hash: c.repeat(64), logicalSize: 1, storedSize: 2 });

  it('a failing change in a group rolls back alone; the others commit', async () => {
    const dir = await makeTempDir();
    try {
      const store = new SqliteMetaStore({ path: join(dir.path, 'kv.db') });
      const results = await Promise.allSettled([
        store.putFile({ path: 'one', version: 1, blob: a('a'), now: 1 }),
        // A known blob whose row is gone: refused, and its savepoint rolled back.
        store.putFile({ path: 'two', version: 1, blob: { ...a('b'), known: true }, now: 1 }),
        store.putFile({ path: 'three', version: 1, blob: a('c'), now: 1 }),
        store.deleteFile({ path: 'one', version: 0, now: 1 }),
      ]);
      expect(results.map((r) => r.status)).toEqual([
        'fulfilled',
        'rejected',
        'fulfilled',
        'fulfilled',
      ]);
      expect(results[1]).toMatchObject({ reason: { code: 'BACKEND_UNAVAILABLE' } });
      // The delete ran after the first put in the same transaction and saw it (version 1 > 0).
      expect(results[3]).toMatchObject({ value: { outcome: 'kept', version: 1 } });
      expect(await store.getFile('one')).toMatchObject({ hash: a('a').hash });
      expect(await store.getFile('two')).toBeNull();
      expect(await store.getBlob(a('b').hash)).toBeNull();
      expect(await store.getFile('three')).toMatchObject({ hash: a('c').hash });
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it('a group whose commit fails fails every change in it and applies none', async () => {
    await withDatabaseLockedByAnother(async (store, unlock) => {
      const results = await Promise.allSettled([
        store.putFile({ path: 'x', version: 1, blob: a('a'), now: 1 }),
        store.putFile({ path: 'y', version: 1, blob: a('b'), now: 1 }),
      ]);
      unlock();
      for (const r of results) {
        expect(r).toMatchObject({ status: 'rejected', reason: { code: 'BACKEND_UNAVAILABLE' } });
      }
      expect(await store.getFile('x')).toBeNull();
      expect(await store.getFile('y')).toBeNull();
      await store.close();
    });
  });
});
