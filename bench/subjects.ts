import { join } from 'node:path';
import type { S3Client } from '@aws-sdk/client-s3';
import pg from 'pg';
import type { BenchConfig } from './config.js';
import { type CountingProxy, countingProxy } from './proxy.js';
import { createBucket, dropBucket, uniqueBucket } from './s3.js';
import {
  type Ceph,
  type Postgres,
  RELAY,
  type ServerProcess,
  startNginx,
  startServer,
  tempDir,
} from './services.js';
import { DirectS3Target, FiletrackerTarget, RoundRobinTarget, type Target } from './targets.js';

/**
 * Where the files go: s3dedup on either store, or S3 directly (the baseline);
 * `nginx`: a plain file server on the same disk (the filesystem store's
 * reference: it stores and serves the client's bytes without checking them);
 * `pg1` / `pg3`: one or three s3dedup instances sharing PostgreSQL metadata
 * and locks and one S3 bucket (the multi-instance deployment); `pg1-fs` /
 * `pg3-fs` the same over one shared blob folder, which shows the cost of
 * PostgreSQL itself without radosgw's latency in every request; `relay`: a
 * bare relay to the same radosgw (bench/relay.ts), the floor for s3dedup's
 * CPU per byte through S3.
 */
export type Store =
  | 'filesystem'
  | 's3'
  | 's3-cache'
  | 'baseline'
  | 'nginx'
  | 'relay'
  | 'pg1'
  | 'pg3'
  | 'pg1-fs'
  | 'pg3-fs';

/** The PostgreSQL stores: how many instances, over which blob store. */
const POSTGRES_STORES: Partial<Record<Store, { instances: number; blobs: 'filesystem' | 's3' }>> = {
  pg1: { instances: 1, blobs: 's3' },
  pg3: { instances: 3, blobs: 's3' },
  'pg1-fs': { instances: 1, blobs: 'filesystem' },
  'pg3-fs': { instances: 3, blobs: 'filesystem' },
};

/** How each store is named in the report. */
export const STORE_LABELS: Record<Store, string> = {
  baseline: 'direct S3 (baseline)',
  nginx: 'nginx (plain file server)',
  relay: 'bare relay to radosgw',
  filesystem: 'filesystem',
  s3: 's3 (radosgw)',
  's3-cache': 's3 (radosgw) + CACHE_DIR',
  pg1: 'PostgreSQL + s3, 1 instance',
  pg3: 'PostgreSQL + s3, 3 instances',
  'pg1-fs': 'PostgreSQL + filesystem, 1 instance',
  'pg3-fs': 'PostgreSQL + filesystem, 3 instances',
};

/** One store under test, set up from nothing for one scenario of one run. */
export interface Subject {
  store: Store;
  target: Target;
  /** The same target as its SDK class, for the baseline-only multipart upload. */
  direct?: DirectS3Target;
  /** The s3dedup processes (none for the baseline). */
  servers: ServerProcess[];
  /** Between the server and radosgw, when asked for. */
  proxy?: CountingProxy;
  /** Processes whose CPU time the phases account, by role (several for the instances of one role). */
  pids: Record<string, number | number[]>;
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
  /** Started only when a PostgreSQL scenario runs. */
  postgres?: Postgres | undefined;
}

let databases = 0;

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
    return {
      store,
      target: direct,
      direct,
      servers: [],
      pids: cephPids,
      close: () => giveBack(bucket),
    };
  }

  if (store === 'nginx') {
    const dir = tempDir(store);
    const nginx = await startNginx(dir.path);
    // WebDAV answers a PUT with 201 or 204; every other status is a failure.
    const target = new FiletrackerTarget(nginx.url, deps.version, connections, (status) =>
      [200, 201, 204].includes(status),
    );
    return {
      store,
      target,
      servers: [],
      pids: { server: nginx.pids() },
      close: async () => {
        await target.close();
        await nginx.stop();
        dir.remove();
      },
    };
  }

  if (store === 'relay') {
    const bucket = uniqueBucket('relay');
    await createBucket(s3, bucket);
    const relay = await startServer(
      {
        S3_ENDPOINT: ceph.endpoint,
        S3_ACCESS_KEY: ceph.accessKey,
        S3_SECRET_KEY: ceph.secretKey,
        BUCKET_NAME: bucket,
        ...s3SigningEnv(),
      },
      profileArgs(config, options.label ?? store),
      { path: RELAY, args: [] },
    ).catch(async (err: unknown) => {
      await giveBack(bucket);
      throw err;
    });
    const target = new FiletrackerTarget(relay.url, deps.version, connections);
    return {
      store,
      target,
      servers: [relay],
      pids: { server: relay.pid, ...cephPids },
      close: async () => {
        await target.close();
        await relay.stop();
        await giveBack(bucket);
      },
    };
  }

  const dir = tempDir(store);
  const env: Record<string, string> = {
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir.path, 'kv.db'),
    TEMP_DIR: join(dir.path, 'tmp'),
  };
  const postgresStore = POSTGRES_STORES[store];
  const instances = postgresStore?.instances ?? 1;
  const blobs = postgresStore?.blobs ?? (store === 's3-cache' ? 's3' : store);
  // The blob cache on the same local disk as the filesystem store's blobs (default size, 1 GiB).
  if (store === 's3-cache') env.CACHE_DIR = join(dir.path, 'cache');
  let database: { name: string; admin: string } | undefined;
  if (postgresStore) {
    if (!deps.postgres) throw new Error('the PostgreSQL scenario needs a PostgreSQL server');
    // A database of its own per subject, so every measurement starts from empty tables.
    database = { name: `bench_${process.pid}_${databases++}`, admin: deps.postgres.url };
    await adminQuery(database.admin, `CREATE DATABASE ${database.name}`);
    const url = new URL(deps.postgres.url);
    url.pathname = `/${database.name}`;
    Object.assign(env, {
      KVSTORAGE_TYPE: 'postgres',
      LOCKS_TYPE: 'postgres',
      DATABASE_URL: url.toString(),
    });
  }
  const dropDatabase = async () => {
    if (database) await adminQuery(database.admin, `DROP DATABASE IF EXISTS ${database.name}`);
  };
  let proxy: CountingProxy | undefined;
  let bucket: string | undefined;
  if (blobs === 'filesystem') {
    Object.assign(env, { STORAGE_TYPE: 'filesystem', STORAGE_PATH: join(dir.path, 'blobs') });
  } else {
    bucket = uniqueBucket('s3dedup');
    if (options.countS3) proxy = await countingProxy(ceph.endpoint);
    Object.assign(env, s3SigningEnv(), {
      STORAGE_TYPE: 's3',
      S3_ENDPOINT: proxy?.url ?? ceph.endpoint,
      S3_ACCESS_KEY: ceph.accessKey,
      S3_SECRET_KEY: ceph.secretKey,
      BUCKET_NAME: bucket,
    });
  }
  const nodeArgs = profileArgs(config, options.label ?? store);
  const servers: ServerProcess[] = [];
  try {
    // One after the other: each instance's start-up applies (or finds) the schema.
    for (let i = 0; i < instances; i++) {
      servers.push(
        await startServer(
          instances === 1 ? env : { ...env, TEMP_DIR: join(dir.path, `tmp-${i}`) },
          nodeArgs,
        ),
      );
    }
  } catch (err) {
    await Promise.all(servers.map((s) => s.stop()));
    await proxy?.close();
    await dropDatabase();
    dir.remove();
    throw err;
  }
  const targets = servers.map((s) => new FiletrackerTarget(s.url, deps.version, connections));
  const target = targets.length === 1 ? (targets[0] as Target) : new RoundRobinTarget(targets);
  const subject: Subject = {
    store,
    target,
    servers,
    pids: { server: servers.map((s) => s.pid), ...cephPids },
    close: async () => {
      await target.close();
      await Promise.all(servers.map((s) => s.stop()));
      await proxy?.close();
      if (bucket !== undefined) await giveBack(bucket);
      await dropDatabase();
      dir.remove();
    },
  };
  if (proxy) subject.proxy = proxy;
  return subject;
}

/** BENCH_S3_PAYLOAD_SIGNING=unsigned measures what HTTPS endpoints get by default. */
function s3SigningEnv(): Record<string, string> {
  const signing = process.env.BENCH_S3_PAYLOAD_SIGNING;
  return signing ? { S3_PAYLOAD_SIGNING: signing } : {};
}

/** With BENCH_CPU_PROF, a V8 CPU profile of the process (s3dedup and the relay alike). */
function profileArgs(config: BenchConfig, label: string): string[] {
  const profile = config.cpuProfileDir;
  return profile ? ['--cpu-prof', `--cpu-prof-dir=${join(profile, label)}`] : [];
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
