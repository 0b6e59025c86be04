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

/**
 * The metadata and blob stores a server configured with `env` uses, opened
 * by the test itself, to look at them (or break them) behind its back.
 */
export async function openStores(
  env: Record<string, string>,
): Promise<{ meta: MetaStore; blobs: BlobStore; close(): Promise<void> }> {
  const closers: Array<() => Promise<void>> = [];
  let meta: MetaStore;
  if (env.KVSTORAGE_TYPE === 'postgres') {
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
    closers.push(() => pool.end());
    meta = await PostgresMetaStore.open(pool);
  } else {
    const sqlite = new SqliteMetaStore({ path: env.SQLITE_PATH as string });
    closers.push(() => sqlite.close());
    meta = sqlite;
  }
  let blobs: BlobStore;
  if (env.STORAGE_TYPE === 'filesystem') {
    blobs = await FilesystemBlobStore.open(env.STORAGE_PATH as string);
  } else {
    const { openTestS3 } = await import('./s3-store.js');
    blobs = await openTestS3({ bucket: env.BUCKET_NAME as string });
    closers.push(() => blobs.close());
  }
  return {
    meta,
    blobs,
    close: async () => {
      for (const close of closers) await close();
    },
  };
}

/** The embedded default (SQLite, a blob folder) or the production shape (radosgw, PostgreSQL). */
export async function deployment(kind: 'embedded' | 'production'): Promise<Deployment> {
  const dir = await makeTempDir();
  const base = { TEMP_DIR: join(dir.path, 'tmp'), CLEANER_ENABLED: 'false' };
  const env: Record<string, string> =
    kind === 'embedded'
      ? {
          ...base,
          STORAGE_TYPE: 'filesystem',
          STORAGE_PATH: join(dir.path, 'blobs'),
          SQLITE_PATH: join(dir.path, 'kv.db'),
        }
      : { ...base, ...s3Env(), ...(await postgresEnv()) };
  return {
    name: kind === 'embedded' ? 'filesystem + sqlite' : 's3 (radosgw) + postgres',
    env,
    open: () => openStores(env),
    remove: async () => {
      if (env.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME);
      await dir.remove();
    },
  };
}
