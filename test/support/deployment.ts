import { join } from 'node:path';
import pino from 'pino';
import { FilesystemBlobStore } from '../../src/blobstore/filesystem.js';
import type { BlobStore } from '../../src/blobstore/port.js';
import type { MetaStore } from '../../src/metastore/port.js';
import { PostgresMetaStore } from '../../src/metastore/postgres.js';
import { SqliteMetaStore } from '../../src/metastore/sqlite.js';
import { createPool } from '../../src/postgres/pool.js';
import { postgresEnv } from './postgres.js';
import { emptyBucket } from './s3.js';
import { s3Env } from './server.js';
import { makeTempDir } from './tmp.js';

/** A deployment's configuration for server processes and commands, over a scratch folder. */
export interface Deployment {
  name: string;
  env: Record<string, string>;
  /** Its metadata and blob stores, opened by the test itself (behind the server's back). */
  open(): Promise<{ meta: MetaStore; blobs: BlobStore; close(): Promise<void> }>;
  remove(): Promise<void>;
}

/** The embedded default (SQLite, a blob folder) or the production shape (radosgw, PostgreSQL). */
export async function deployment(kind: 'embedded' | 'production'): Promise<Deployment> {
  const dir = await makeTempDir();
  const base = { TEMP_DIR: join(dir.path, 'tmp'), CLEANER_ENABLED: 'false' };
  if (kind === 'embedded') {
    const env = {
      ...base,
      STORAGE_TYPE: 'filesystem',
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
    };
    return {
      name: 'filesystem + sqlite',
      env,
      open: async () => {
        const meta = new SqliteMetaStore({ path: env.SQLITE_PATH });
        const blobs = await FilesystemBlobStore.open(env.STORAGE_PATH);
        return { meta, blobs, close: () => meta.close() };
      },
      remove: () => dir.remove(),
    };
  }
  const env: Record<string, string> = { ...base, ...s3Env(), ...(await postgresEnv()) };
  return {
    name: 's3 (radosgw) + postgres',
    env,
    open: async () => {
      const pool = createPool(
        {
          connectionString: env.DATABASE_URL,
          max: 2,
          queryTimeoutMs: 10_000,
          connectTimeoutMs: 5000,
          applicationName: 'test-inspector',
        },
        pino({ level: 'silent' }),
      );
      const meta = await PostgresMetaStore.open(pool);
      const { openTestS3 } = await import('./s3-store.js');
      const blobs = await openTestS3({ bucket: env.BUCKET_NAME as string });
      return {
        meta,
        blobs,
        close: async () => {
          await pool.end();
          await blobs.close();
        },
      };
    },
    remove: async () => {
      if (env.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME);
      await dir.remove();
    },
  };
}
