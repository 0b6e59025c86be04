import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import type { BenchConfig } from './config.js';
import { type CountingProxy, countingProxy } from './proxy.js';
import { createBucket, dropBucket, uniqueBucket } from './s3.js';
import { type Ceph, type ServerProcess, startServer, tempDir } from './services.js';
import { DirectS3Target, FiletrackerTarget, type Target } from './targets.js';

/** Where the files go: s3dedup on either store, or S3 directly (the baseline). */
export type Store = 'filesystem' | 's3' | 'baseline';

/** One store under test, set up from nothing for one scenario of one run. */
export interface Subject {
  store: Store;
  target: Target;
  /** The same target as its SDK class, for the baseline-only multipart upload. */
  direct?: DirectS3Target;
  server?: ServerProcess;
  /** Between the server and radosgw, when asked for. */
  proxy?: CountingProxy;
  /** Processes whose CPU time the phases account, by role. */
  pids: Record<string, number>;
  /** Stops everything and gives the data back: the server, its folders, the bucket. */
  close(): Promise<void>;
}

export interface SubjectDeps {
  config: BenchConfig;
  ceph: Ceph;
  /** The benchmark's own SDK client (baseline and bucket housekeeping). */
  s3: S3Client;
  /** Version (seconds) sent with every PUT. */
  version: number;
}

/**
 * Sets up `store` fresh: a new server process (so its memory peak is this
 * scenario's alone) over new folders and a new bucket, or a new bucket for
 * the baseline. With `countS3`, the server reaches radosgw through a counting proxy.
 */
export async function openSubject(
  deps: SubjectDeps,
  store: Store,
  options: { countS3?: boolean; label?: string } = {},
): Promise<Subject> {
  const { ceph, s3, config } = deps;
  const cephPids = { radosgw: ceph.pids.radosgw, osd: ceph.pids.osd };
  const connections = Math.max(config.small.concurrency, config.medium.concurrency);
  const giveBack = async (bucket: string) => {
    await dropBucket(s3, bucket);
    await ceph.collectGarbage();
  };

  if (store === 'baseline') {
    const bucket = uniqueBucket('direct');
    await createBucket(s3, bucket);
    const direct = new DirectS3Target(s3, bucket, {
      partSize: config.large.partSize,
      inFlight: config.large.partsInFlight,
    });
    return { store, target: direct, direct, pids: cephPids, close: () => giveBack(bucket) };
  }

  const dir = tempDir(store);
  const env: Record<string, string> = {
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir.path, 'kv.db'),
    TEMP_DIR: join(dir.path, 'tmp'),
  };
  let proxy: CountingProxy | undefined;
  let bucket: string | undefined;
  if (store === 'filesystem') {
    Object.assign(env, { STORAGE_TYPE: 'filesystem', STORAGE_PATH: join(dir.path, 'blobs') });
  } else {
    bucket = uniqueBucket('s3dedup');
    if (options.countS3) proxy = await countingProxy(ceph.endpoint);
    Object.assign(env, {
      STORAGE_TYPE: 's3',
      S3_ENDPOINT: proxy?.url ?? ceph.endpoint,
      S3_ACCESS_KEY: ceph.accessKey,
      S3_SECRET_KEY: ceph.secretKey,
      BUCKET_NAME: bucket,
    });
  }
  const profile = config.cpuProfileDir;
  const nodeArgs = profile
    ? ['--cpu-prof', `--cpu-prof-dir=${join(profile, options.label ?? store)}`]
    : [];
  let server: ServerProcess;
  try {
    server = await startServer(env, nodeArgs);
  } catch (err) {
    await proxy?.close();
    dir.remove();
    throw err;
  }
  const filetracker = new FiletrackerTarget(server.url, deps.version, connections);
  const subject: Subject = {
    store,
    target: filetracker,
    server,
    pids: { server: server.pid, ...cephPids },
    close: async () => {
      await filetracker.close();
      await server.stop();
      await proxy?.close();
      if (bucket !== undefined) await giveBack(bucket);
      dir.remove();
    },
  };
  if (proxy) subject.proxy = proxy;
  return subject;
}
