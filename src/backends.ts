import { FilesystemBlobStore } from './blobstore/filesystem.js';
import type { BlobStore } from './blobstore/port.js';
import type { Config } from './config/schema.js';
import { maxStoredSize } from './dedup/ingest.js';
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
export class UnsupportedBackendError extends Error {}

/** Opens the stores the configuration names. Everything opened is closed again if a later one fails. */
export async function openBackends(config: Config, logger: Logger): Promise<Backends> {
  const opened: { close(): Promise<void> }[] = [];
  const closeAll = async () => {
    for (const b of opened.reverse())
      await b.close().catch((err) => logger.warn({ err }, 'close failed'));
  };
  try {
    const meta = openMeta(config);
    opened.push(meta);
    const blobs = await openBlobs(config, logger);
    opened.push(blobs);
    const locks = openLocks(config);
    opened.push(locks);
    return { meta, blobs, locks, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

function openMeta(config: Config): MetaStore {
  if (config.KVSTORAGE_TYPE === 'sqlite') return new SqliteMetaStore({ path: config.SQLITE_PATH });
  throw new UnsupportedBackendError('KVSTORAGE_TYPE=postgres is not available in this build yet');
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
  return S3BlobStore.open({
    endpoint: required('S3_ENDPOINT'),
    accessKeyId: required('S3_ACCESS_KEY'),
    secretAccessKey: required('S3_SECRET_KEY'),
    region: config.S3_REGION,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
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
  });
}

function openLocks(config: Config): LockManager {
  if (config.LOCKS_TYPE === 'memory') return new MemoryLockManager();
  throw new UnsupportedBackendError('LOCKS_TYPE=postgres is not available in this build yet');
}
