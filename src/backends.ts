import { FilesystemBlobStore } from './blobstore/filesystem.js';
import type { BlobStore } from './blobstore/port.js';
import type { Config } from './config/schema.js';
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
    const blobs = await openBlobs(config);
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

async function openBlobs(config: Config): Promise<BlobStore> {
  if (config.STORAGE_TYPE === 'filesystem') return FilesystemBlobStore.open(config.STORAGE_PATH);
  throw new UnsupportedBackendError('STORAGE_TYPE=s3 is not available in this build yet');
}

function openLocks(config: Config): LockManager {
  if (config.LOCKS_TYPE === 'memory') return new MemoryLockManager();
  throw new UnsupportedBackendError('LOCKS_TYPE=postgres is not available in this build yet');
}
