import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SqliteMetaStore } from '../../src/metastore/sqlite.js';
import { makeTempDir } from '../support/tmp.js';
import { metaStoreContract } from './metastore.contract.js';

metaStoreContract('sqlite', async () => {
  const dir = await makeTempDir();
  return {
    open: async () => new SqliteMetaStore({ path: join(dir.path, 'nested', 'kv.db') }),
    reset: async (store) => {
      (store as SqliteMetaStore).database.exec('DELETE FROM files; DELETE FROM blobs;');
    },
    close: dir.remove,
  };
});

describe('SqliteMetaStore specifics', () => {
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
    const dir = await makeTempDir();
    try {
      const path = join(dir.path, 'kv.db');
      const store = new SqliteMetaStore({ path, busyTimeoutMs: 50 });
      const other = new Database(path);
      other.exec('BEGIN EXCLUSIVE');
      await expect(
        store.putFile({
          path: 'x',
          version: 1,
          blob: { hash: 'a'.repeat(64), logicalSize: 1, storedSize: 2 },
          now: 1,
        }),
      ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      other.exec('ROLLBACK');
      other.close();
      await store.close();
      await expect(store.getFile('x')).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    } finally {
      await dir.remove();
    }
  });
});
