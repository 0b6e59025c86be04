import type { FastifyInstance } from 'fastify';
import { buildApp, buildOpsApp } from './app.js';
import { Authenticator } from './auth/guard.js';
import { registerAuthMetrics } from './auth/metrics.js';
import { UserDirectory } from './auth/users.js';
import { type Backends, openBackends } from './backends.js';
import { CachingBlobStore } from './blobcache/store.js';
import type { BlobStore } from './blobstore/port.js';
import { createCleaner } from './cleaner/cleaner.js';
import { scheduleCleaner } from './cleaner/schedule.js';
import type { Config } from './config/schema.js';
import { FileService } from './dedup/service.js';
import { SPILL_KIND } from './dedup/spill.js';
import { StartupError } from './errors.js';
import { timedLocks } from './locks/metrics.js';
import { LiveMigration } from './migration/live.js';
import { migrate } from './migration/migrate.js';
import type { OldStore } from './migration/source.js';
import type { Logger } from './observability/logger.js';
import { Metrics } from './observability/metrics.js';
import { processGcPacer } from './runtime/gc-pacer.js';
import { registerGcPacerMetrics } from './runtime/metrics.js';
import { registerStoreMetrics } from './stats/metrics.js';
import { removeOrphanedTempFiles } from './tempfiles.js';

export interface RunningServer {
  app: FastifyInstance;
  /** The OPS_LISTEN_PORT listener's address, when there is one. */
  opsUrl?: string;
  backends: Backends;
  /** The address actually bound (the port is real even when LISTEN_PORT=0). */
  url: string;
  /** Stops accepting, waits up to SHUTDOWN_TIMEOUT for in-flight requests, closes the stores. */
  close(): Promise<void>;
}

export function createService(
  config: Config,
  backends: Backends,
  logger: Logger,
  metrics?: Metrics,
): FileService {
  return new FileService({
    meta: backends.meta,
    blobs: backends.blobs,
    locks: backends.locks,
    logger,
    keyDepth: config.S3_KEY_SHARDING_DEPTH,
    maxUploadSize: config.MAX_UPLOAD_SIZE,
    gzipLevel: config.GZIP_LEVEL,
    verifyHints: !config.TRUST_CLIENT_CHECKSUMS,
    tempDir: config.TEMP_DIR,
    spillThreshold: config.SPILL_THRESHOLD,
    lockTimeoutMs: config.LOCK_TIMEOUT * 1000,
    metrics: metrics?.dedup,
  });
}

/**
 * The server's blob store: with CACHE_DIR and an S3 store, behind a local
 * cache of hot blobs (src/blobcache/). Only the server has one: the
 * commands (migrate, fsck, cleanup) read each blob once at most.
 */
async function withBlobCache(
  config: Config,
  opened: Backends,
  logger: Logger,
  metrics: Metrics,
): Promise<BlobStore> {
  if (config.CACHE_DIR === undefined) return opened.blobs;
  if (config.STORAGE_TYPE !== 's3') {
    logger.warn(
      { CACHE_DIR: config.CACHE_DIR },
      'CACHE_DIR is for the S3 store; the filesystem store reads its blobs locally already, so no cache',
    );
    return opened.blobs;
  }
  try {
    return await CachingBlobStore.open(opened.blobs, {
      dir: config.CACHE_DIR,
      maxBytes: config.CACHE_MAX_BYTES,
      maxEntryBytes: config.CACHE_MAX_ENTRY_BYTES,
      keyDepth: config.S3_KEY_SHARDING_DEPTH,
      logger,
      registry: metrics.registry,
    });
  } catch (err) {
    await opened.close();
    throw new StartupError(`CACHE_DIR ${config.CACHE_DIR}: ${(err as Error).message}`);
  }
}

/** A live migration (SPEC §7): where to fall back to, and what to copy in the background. */
export interface LiveSetup {
  /** Where GET/HEAD of files not here yet are answered from, and PUT/DELETE also go. */
  source: OldStore;
  /** The background copy: the paths to copy and where from; null for none (--proxy-only). */
  background: { paths: () => AsyncIterable<string>; source: OldStore } | null;
  concurrency: number;
}

export async function startServer(
  config: Config,
  logger: Logger,
  options: { live?: LiveSetup } = {},
): Promise<RunningServer> {
  const orphans = await removeOrphanedTempFiles(config.TEMP_DIR, SPILL_KIND);
  if (orphans > 0)
    logger.info({ orphans, dir: config.TEMP_DIR }, 'removed spill files left by a crashed process');
  const metrics = new Metrics();
  // Before the stores open: a users file that does not parse stops start-up
  // with nothing to undo.
  const users =
    config.AUTH_USERS_FILE === undefined
      ? null
      : await UserDirectory.open(config.AUTH_USERS_FILE, logger);
  const access = users
    ? new Authenticator(users, { maxFailures: config.AUTH_FAILURE_LIMIT })
    : undefined;
  if (users && access) registerAuthMetrics(metrics.registry, access, users);
  const opened = await openBackends(config, logger).catch((err: unknown) => {
    users?.close();
    throw err;
  });
  // Every lock the server takes (requests, migration, cleaner) is timed.
  const backends: Backends = {
    ...opened,
    blobs: await withBlobCache(config, opened, logger, metrics).catch((err: unknown) => {
      users?.close();
      throw err;
    }),
    locks: timedLocks(opened.locks, metrics.lockWait),
  };
  const gcPacer = processGcPacer();
  registerGcPacerMetrics(metrics.registry, gcPacer);
  if (!gcPacer.enabled)
    logger.warn(
      'no gc() to pace collections with: large transfers will peak higher in memory, see docs/memory.md',
    );
  registerStoreMetrics(metrics.registry, backends.meta);
  // Reading the kept totals folds PostgreSQL's pending changes in: done every
  // minute too, so they do not pile up where nothing scrapes /metrics.
  const totalsFolder = setInterval(() => {
    backends.meta.keptTotals().catch(() => {});
  }, 60_000);
  totalsFolder.unref();
  const service = createService(config, backends, logger, metrics);
  const live = options.live
    ? new LiveMigration({
        files: service,
        source: options.live.source,
        locks: backends.locks,
        lockTimeoutMs: config.LOCK_TIMEOUT * 1000,
        logger,
        metrics: metrics.migration,
      })
    : null;
  const app = buildApp({
    service: live ?? service,
    meta: backends.meta,
    blobs: backends.blobs,
    logger,
    clientIdleTimeoutSeconds: config.CLIENT_IDLE_TIMEOUT,
    gcPacer,
    metrics,
    accessLog: config.ACCESS_LOG,
    trustedProxies: config.TRUSTED_PROXIES === '' ? [] : config.TRUSTED_PROXIES.split(','),
    access,
    opsRoutes: config.OPS_LISTEN_PORT === undefined,
  });
  const ops =
    config.OPS_LISTEN_PORT === undefined
      ? null
      : buildOpsApp({ meta: backends.meta, blobs: backends.blobs, service, logger, metrics });
  let url: string;
  let opsUrl: string | undefined;
  try {
    await app.listen({ host: config.LISTEN_ADDRESS, port: config.LISTEN_PORT });
    url = addressOf(app);
    if (ops) {
      await ops.listen({ host: config.OPS_LISTEN_ADDRESS, port: config.OPS_LISTEN_PORT });
      opsUrl = addressOf(ops);
    }
  } catch (err) {
    // Whatever listened lets go, and the stores close even if that fails.
    await Promise.allSettled([app.close(), ops?.close()]);
    users?.close();
    await backends.close();
    throw err;
  }
  const cleaner = config.CLEANER_ENABLED
    ? scheduleCleaner(
        createCleaner(config, backends, logger, metrics),
        config.CLEANER_INTERVAL * 1000,
        logger,
      )
    : null;

  const stopMigration = new AbortController();
  const background =
    live && options.live?.background
      ? startBackgroundCopy(live, service, options.live, metrics, logger, stopMigration.signal)
      : null;

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      const timeoutMs = config.SHUTDOWN_TIMEOUT * 1000;
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), timeoutMs);
      });
      // Metrics stay scrapable while requests drain; the ops listener goes last.
      const closed = app.close().then(() => 'closed' as const);
      // close() drops the connections idle at that moment; a keep-alive
      // connection busy then goes idle when its request ends and would hold
      // the server open until its keep-alive timeout. Keep dropping them.
      const sweeper = setInterval(() => app.server.closeIdleConnections(), 50);
      if ((await Promise.race([closed, deadline])) === 'timeout') {
        logger.warn(
          { timeoutMs },
          'in-flight requests did not finish in time; closing their connections',
        );
        app.server.closeAllConnections();
        await closed;
      }
      clearTimeout(timer);
      clearInterval(sweeper);
      clearInterval(totalsFolder);
      await ops?.close();
      users?.close();
      gcPacer.stop();
      await cleaner?.stop();
      stopMigration.abort();
      await background;
      await options.live?.source.close();
      await backends.close();
    })();
    return closing;
  };
  // The last thing before returning: whoever waits for this line (a supervisor,
  // the tests) may signal at once; the CLI listens for signals from before
  // the start (src/cli/server.ts).
  logger.info(
    {
      url,
      ...(opsUrl === undefined ? {} : { opsUrl }),
      ...(users ? { users: users.size } : {}),
      storage: config.STORAGE_TYPE,
      metadata: config.KVSTORAGE_TYPE,
      locks: config.LOCKS_TYPE,
    },
    'listening',
  );
  return { app, backends, url, ...(opsUrl === undefined ? {} : { opsUrl }), close };
}

function addressOf(app: FastifyInstance): string {
  const address = app.server.address();
  return typeof address === 'object' && address
    ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
    : String(address);
}

/** The background copy of a live migration: logged when it ends; stopped by `signal` at shutdown. */
async function startBackgroundCopy(
  live: LiveMigration,
  files: FileService,
  setup: LiveSetup,
  metrics: Metrics,
  logger: Logger,
  signal: AbortSignal,
): Promise<void> {
  const background = setup.background;
  if (!background) return;
  logger.info({ from: background.source.name }, 'live migration: copying in the background');
  try {
    const report = await migrate({
      files,
      source: background.source,
      copy: live.copyLocked,
      paths: background.paths(),
      concurrency: setup.concurrency,
      attempts: 5,
      backoffMs: 500,
      logger,
      metrics: metrics.migration,
      signal,
    });
    logger.info(
      {
        copied: report.copied,
        skipped: report.skipped,
        failed: report.failed,
        bytes: report.bytes,
      },
      signal.aborted
        ? 'live migration: background copy stopped'
        : 'live migration: background copy done',
    );
  } catch (err) {
    logger.error({ err }, 'live migration: background copy failed (requests still fall back)');
  } finally {
    if (background.source !== setup.source) await background.source.close();
  }
}
