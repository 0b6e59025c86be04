import type pg from 'pg';
import { FilesystemBlobStore } from './blobstore/filesystem.js';
import type { BlobStore } from './blobstore/port.js';
import type { Config } from './config/schema.js';
import { maxStoredSize } from './dedup/upload-check.js';
import { StartupError } from './errors.js';
import { MemoryLockManager } from './locks/memory.js';
import type { LockManager } from './locks/port.js';
import type { MetaStore } from './metastore/port.js';
import { SqliteMetaStore } from './metastore/sqlite.js';
import type { Logger } from './observability/logger.js';

export interface Backends {
  meta: MetaStore;
  blobs: BlobStore;
  locks: LockManager;
  close(): Promise<void>;
}

/** A configured backend this build cannot provide; start-up stops with this message. */
export class UnsupportedBackendError extends StartupError {}

/** Opens the stores the configuration names. Everything opened is closed again if a later one fails. */
export async function openBackends(config: Config, logger: Logger): Promise<Backends> {
  const opened: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    for (const b of opened.reverse())
      await b.close().catch((err) => logger.warn({ err }, 'close failed'));
  };
  try {
    const pools = await openPools(config, logger, opened);
    const meta = await openMeta(config, pools, logger);
    opened.push(meta);
    const blobs = await openBlobs(config, logger);
    opened.push(blobs);
    const locks = await openLocks(config, pools, logger);
    opened.push(locks);
    if (config.KVSTORAGE_TYPE === 'postgres' && config.LOCKS_TYPE === 'memory') {
      logger.warn(
        'KVSTORAGE_TYPE=postgres with LOCKS_TYPE=memory: fine for one instance, but several instances sharing the database need LOCKS_TYPE=postgres',
      );
    }
    return { meta, blobs, locks, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

interface Pools {
  query?: pg.Pool;
  locks?: pg.Pool;
}

/**
 * PostgreSQL connection pools: one for queries and transactions, and, with
 * LOCKS_TYPE=postgres, a second one of the same size for advisory locks (see
 * src/locks/postgres.ts for why they are separate). At most
 * 2 x POSTGRES_MAX_CONNECTIONS connections per instance.
 */
async function openPools(
  config: Config,
  logger: Logger,
  opened: { close(): Promise<void> }[],
): Promise<Pools> {
  const usesPostgres = config.KVSTORAGE_TYPE === 'postgres' || config.LOCKS_TYPE === 'postgres';
  if (!usesPostgres) return {};
  const { createPool } = await import('./postgres/pool.js');
  const options = {
    connectionString: config.DATABASE_URL,
    host: config.POSTGRES_HOST,
    port: config.POSTGRES_PORT,
    user: config.POSTGRES_USER,
    password: config.POSTGRES_PASSWORD,
    database: config.POSTGRES_DB,
    max: config.POSTGRES_MAX_CONNECTIONS,
    queryTimeoutMs: config.POSTGRES_QUERY_TIMEOUT * 1000,
    connectTimeoutMs: config.POSTGRES_CONNECT_TIMEOUT * 1000,
  };
  const pools: Pools = {};
  pools.query = createPool({ ...options, applicationName: 's3dedup' }, logger);
  const queryPool = pools.query;
  opened.push({ close: () => queryPool.end() });
  if (config.LOCKS_TYPE === 'postgres') {
    // Lock waits are bounded by lock_timeout, not by the query timeout.
    pools.locks = createPool(
      { ...options, queryTimeoutMs: 0, applicationName: 's3dedup-locks' },
      logger,
    );
    const lockPool = pools.locks;
    opened.push({ close: () => lockPool.end() });
  }
  return pools;
}

async function openMeta(config: Config, pools: Pools, logger: Logger): Promise<MetaStore> {
  if (config.KVSTORAGE_TYPE === 'sqlite')
    return new SqliteMetaStore({
      path: config.SQLITE_PATH,
      busyTimeoutMs: config.LOCK_TIMEOUT * 1000,
    });
  if (!pools.query) throw new UnsupportedBackendError('no PostgreSQL pool');
  const { PostgresMetaStore } = await import('./metastore/postgres.js');
  return PostgresMetaStore.open(pools.query, { waitMs: config.STARTUP_TIMEOUT * 1000, logger });
}

async function openBlobs(config: Config, logger: Logger): Promise<BlobStore> {
  if (config.STORAGE_TYPE === 'filesystem') return FilesystemBlobStore.open(config.STORAGE_PATH);
  // loadConfig guarantees these are set when STORAGE_TYPE=s3.
  const required = (name: 'S3_ENDPOINT' | 'S3_ACCESS_KEY' | 'S3_SECRET_KEY') => {
    const value = config[name];
    if (value === undefined)
      throw new UnsupportedBackendError(`${name} is required when STORAGE_TYPE=s3`);
    return value;
  };
  // Loaded only when used: the AWS SDK costs about 20 MB of resident memory.
  const { S3BlobStore } = await import('./blobstore/s3.js');
  return S3BlobStore.open(
    {
      endpoint: required('S3_ENDPOINT'),
      accessKeyId: required('S3_ACCESS_KEY'),
      secretAccessKey: required('S3_SECRET_KEY'),
      region: config.S3_REGION,
      forcePathStyle: config.S3_FORCE_PATH_STYLE,
      payloadSigning: config.S3_PAYLOAD_SIGNING,
      bucket: config.BUCKET_NAME,
      partSize: config.S3_PART_SIZE,
      partsPerUpload: config.S3_PARTS_PER_UPLOAD,
      uploadBuffer: config.S3_UPLOAD_BUFFER,
      maxObjectSize: maxStoredSize(config.MAX_UPLOAD_SIZE),
      connectTimeoutMs: config.S3_CONNECT_TIMEOUT * 1000,
      requestTimeoutMs: config.S3_REQUEST_TIMEOUT * 1000,
      idleTimeoutMs: config.S3_REQUEST_TIMEOUT * 1000,
      maxSockets: config.S3_MAX_SOCKETS,
      maxAttempts: 3,
      logger,
    },
    config.STARTUP_TIMEOUT * 1000,
  );
}

async function openLocks(config: Config, pools: Pools, logger: Logger): Promise<LockManager> {
  if (config.LOCKS_TYPE === 'memory') return new MemoryLockManager();
  if (!pools.locks || !pools.query)
    throw new UnsupportedBackendError('no PostgreSQL pool for locks');
  const { PostgresLockManager } = await import('./locks/postgres.js');
  return new PostgresLockManager(pools.locks, pools.query, logger);
}
