import { join } from 'node:path';
import pino from 'pino';
import { loadConfig } from '../../src/config/load.js';
import type { Config } from '../../src/config/schema.js';
import { type RunningServer, startServer } from '../../src/server.js';
import { postgresEnv } from './postgres.js';
import { emptyBucket, type S3Target, s3Target } from './s3.js';
import { makeTempDir } from './tmp.js';

/**
 * A set of backends the end-to-end suites run against. Each returns the
 * environment that points a server at its stores; `dir` is the test's own
 * scratch folder.
 */
export interface BackendProfile {
  name: string;
  env(dir: string): Promise<Record<string, string>>;
}

export const filesystemProfile: BackendProfile = {
  name: 'filesystem + sqlite',
  env: async (dir) => ({
    STORAGE_TYPE: 'filesystem',
    STORAGE_PATH: join(dir, 'blobs'),
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir, 'kv.db'),
  }),
};

let buckets = 0;
/** A bucket name no other test (or earlier run on the same cluster) uses. */
export function uniqueBucket(): string {
  return `t-${process.pid}-${Date.now().toString(36)}-${buckets++}`;
}

/** A fresh bucket on one of the S3 servers the global setup started (radosgw unless named). */
export function s3Env(target: S3Target = s3Target()): Record<string, string> {
  return {
    STORAGE_TYPE: 's3',
    S3_ENDPOINT: target.endpoint,
    S3_ACCESS_KEY: target.accessKey,
    S3_SECRET_KEY: target.secretKey,
    BUCKET_NAME: uniqueBucket(),
  };
}

export const s3Profile: BackendProfile = {
  name: 's3 (Ceph radosgw) + sqlite',
  env: async (dir) => ({
    ...s3Env(),
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir, 'kv.db'),
  }),
};

/** The second S3 implementation: no conditional PutObject, DeleteObjects only with Content-MD5. */
export const swiftProfile: BackendProfile = {
  name: 's3 (OpenStack Swift s3api) + sqlite',
  env: async (dir) => ({
    ...s3Env(s3Target('swift')),
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir, 'kv.db'),
  }),
};

/** The production shape: S3 blobs, PostgreSQL metadata and advisory locks. */
export const postgresProfile: BackendProfile = {
  name: 's3 (Ceph radosgw) + postgres + postgres locks',
  env: async () => ({ ...s3Env(), ...(await postgresEnv()) }),
};

export interface TestServer {
  url: string;
  config: Config;
  server: RunningServer;
  dir: string;
  close(): Promise<void>;
}

/** A real server listening on a free loopback port, with its own scratch folder. */
export async function startTestServer(
  profile: BackendProfile,
  env: Record<string, string> = {},
): Promise<TestServer> {
  const dir = await makeTempDir();
  const config = loadConfig({
    env: {
      LISTEN_ADDRESS: '127.0.0.1',
      LISTEN_PORT: '0',
      TEMP_DIR: join(dir.path, 'tmp'),
      SHUTDOWN_TIMEOUT: '5',
      CLEANER_ENABLED: 'false',
      ...(await profile.env(dir.path)),
      ...env,
    },
  });
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const server = await startServer(config, logger);
  return {
    url: server.url,
    config,
    server,
    dir: dir.path,
    close: async () => {
      await server.close();
      if (config.STORAGE_TYPE === 's3') await emptyBucket(config.BUCKET_NAME, config.S3_ACCESS_KEY);
      await dir.remove();
    },
  };
}
