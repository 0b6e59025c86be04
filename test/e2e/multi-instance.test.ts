import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync, gzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blobstore/port.js';
import type { MetaStore } from '../../src/metastore/port.js';
import { formatVersion } from '../../src/protocol/versions.js';
import { openStores } from '../support/deployment.js';
import { pyVersionQuery } from '../support/http.js';
import { checkInvariants, dumpMetadata } from '../support/invariants.js';
import { createTestDatabase } from '../support/postgres.js';
import { runCli, type ServerProcess, startServerProcess } from '../support/process.js';
import { emptyBucket } from '../support/s3.js';
import { s3Env } from '../support/server.js';
import { makeTempDir } from '../support/tmp.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

interface Reply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** One HTTP request with a bounded wait; a refused or reset connection is `null`. */
async function send(
  url: string,
  method: 'GET' | 'HEAD' | 'PUT' | 'DELETE',
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<Reply | null> {
  try {
    const res = await request(url, {
      method,
      body,
      headers,
      headersTimeout: 20_000,
      bodyTimeout: 20_000,
    });
    const data = Buffer.from(await res.body.arrayBuffer());
    const h: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers)) h[k] = String(v);
    return { status: res.statusCode, headers: h, body: data };
  } catch {
    return null;
  }
}

/** What a path may hold: certain after an acknowledged mutation, several states after an uncertain one. */
type State = { kind: 'absent' } | { kind: 'file'; hash: string; version: number };
const same = (a: State, b: State) =>
  a.kind === b.kind &&
  (a.kind === 'absent' || (b.kind === 'file' && a.hash === b.hash && a.version === b.version));

/** How the instances of a suite are configured, and how the test reads their stores directly. */
interface Deployment {
  instances: number;
  /** Settings shared by every instance. */
  env(dir: string): Promise<Record<string, string>>;
  /** The metadata and blob stores as the instances see them, opened by the test itself. */
  inspect(
    env: Record<string, string>,
  ): Promise<{ meta: MetaStore; blobs: BlobStore; close(): Promise<void> }>;
  cleanup(env: Record<string, string>): Promise<void>;
}

/** Several processes sharing one PostgreSQL database (metadata and advisory locks) and one radosgw bucket. */
const postgresAndS3: Deployment = {
  instances: 3,
  env: async () => ({
    ...s3Env(),
    KVSTORAGE_TYPE: 'postgres',
    LOCKS_TYPE: 'postgres',
    DATABASE_URL: await createTestDatabase(),
    POSTGRES_MAX_CONNECTIONS: '8',
  }),
  inspect: openStores,
  cleanup: async (env) => {
    if (env.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME);
  },
};

/** One process, SQLite metadata, blobs in a radosgw bucket. */
const sqliteAndS3: Deployment = {
  instances: 1,
  env: async (dir) => ({ ...s3Env(), KVSTORAGE_TYPE: 'sqlite', SQLITE_PATH: join(dir, 'kv.db') }),
  inspect: openStores,
  cleanup: async (env) => {
    if (env.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME);
  },
};

/**
 * The embedded default: one process, SQLite and a blob folder. Killing it
 * checks that a PUT or DELETE is acknowledged only once its change is
 * committed (SQLite changes are group-committed, src/metastore/sqlite.ts).
 */
const sqliteAndFolder: Deployment = {
  instances: 1,
  env: async (dir) => ({
    STORAGE_TYPE: 'filesystem',
    STORAGE_PATH: join(dir, 'blobs'),
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir, 'kv.db'),
  }),
  inspect: openStores,
  cleanup: async () => {},
};

/**
 * s3dedup processes under a mixed load of clients, with the same stores.
 * SPEC §10: zero unexpected errors, zero lost acknowledged writes, the
 * invariants hold when checked directly against the metadata and the blobs.
 */
function clusterSuite(title: string, deployment: Deployment) {
  describe(title, () => {
    let dir: { path: string; remove(): Promise<void> };
    let env: Record<string, string>;
    let instances: (ServerProcess | null)[] = [];
    let meta: MetaStore;
    let blobs: BlobStore;
    let closeStores: () => Promise<void>;

    const contents = [
      randomBytes(2 * 1024),
      Buffer.from('shared test input\n'.repeat(1000)),
      randomBytes(40 * 1024),
      randomBytes(6 * MiB), // above the 5 MiB part size: multipart uploads, longer crash windows
    ];
    const hashes = new Set(contents.map(sha));

    async function startInstance(i: number): Promise<ServerProcess> {
      return startServerProcess({
        SQLITE_PATH: join(dir.path, `unused${i}.db`),
        ...env,
        TEMP_DIR: join(dir.path, `tmp${i}`),
        S3_PART_SIZE: String(5 * MiB),
        SPILL_THRESHOLD: String(64 * 1024),
        LOCK_TIMEOUT: '20',
      });
    }

    beforeAll(async () => {
      dir = await makeTempDir();
      env = await deployment.env(dir.path);
      instances = await Promise.all(
        Array.from({ length: deployment.instances }, (_, i) => startInstance(i)),
      );
      ({ meta, blobs, close: closeStores } = await deployment.inspect(env));
    }, 60_000);

    afterAll(async () => {
      await Promise.all(instances.map((s) => s?.stop('SIGKILL')));
      await closeStores?.();
      if (env) await deployment.cleanup(env);
      await dir?.remove();
    });

    /**
     * Runs the mixed load for `ms`: mutations of one path are issued one at a
     * time with increasing versions (so the last acknowledged one is well
     * defined), while reads, listings and other paths' mutations overlap freely
     * and shared contents make every instance touch the same blobs' counts.
     */
    async function load(prefix: string, ms: number, chaos: boolean) {
      const paths = Array.from(
        { length: 10 },
        (_, i) => `${prefix}/${i % 2 ? 'odd' : 'even'}/file-${i}`,
      );
      const possible = new Map<string, State[]>(paths.map((p) => [p, [{ kind: 'absent' }]]));
      const busy = new Set<string>();
      let version = 1_600_000_000;
      const unexpected: string[] = [];
      let ops = 0;
      let uncertain = 0;
      const deadline = Date.now() + ms;
      // Under chaos the load lasts until the killer is done: at least `ms`, and
      // long enough for three kills on a machine slow to restart an instance.
      let killerDone = !chaos;
      const running = () => (chaos ? !killerDone : Date.now() < deadline);
      let x = 12345;
      const rnd = (n: number) => {
        x = (x * 1103515245 + 12345) >>> 0;
        return x % n;
      };
      const live = () => instances.flatMap((s) => (s ? [s] : []));
      const pick = () => {
        const up = live();
        return up[rnd(up.length)];
      };

      const worker = async () => {
        while (running()) {
          const path = paths[rnd(paths.length)] as string;
          const op = rnd(100);
          const server = pick();
          if (!server) {
            // Every instance is down (a single one being restarted): wait for it.
            await sleep(20);
            continue;
          }
          if (op < 55) {
            if (busy.has(path)) continue;
            busy.add(path);
            try {
              const content = contents[rnd(contents.length)] as Buffer;
              const v = version++;
              const isDelete = op < 15;
              const res = isDelete
                ? await send(`${server.url}/files/${path}?${pyVersionQuery(v)}`, 'DELETE')
                : await send(
                    `${server.url}/files/${path}?${pyVersionQuery(v)}`,
                    'PUT',
                    gzipSync(content, { level: 1 }),
                    {
                      'content-encoding': 'gzip',
                      'sha256-checksum': sha(content),
                      'logical-size': String(content.length),
                    },
                  );
              ops++;
              const next: State = isDelete
                ? { kind: 'absent' }
                : { kind: 'file', hash: sha(content), version: v };
              const acknowledged =
                res !== null && (res.status === 200 || (isDelete && res.status === 404));
              if (acknowledged) possible.set(path, [next]);
              else if (res === null && chaos) {
                // The instance died under the request: it may or may not have taken effect.
                uncertain++;
                possible.set(path, [...(possible.get(path) ?? []), next]);
              } else
                unexpected.push(
                  `${isDelete ? 'DELETE' : 'PUT'} ${path}: ${res?.status ?? 'no answer'} ${res?.headers['x-exception'] ?? ''}`,
                );
            } finally {
              busy.delete(path);
            }
          } else if (op < 90) {
            const res = await send(`${server.url}/files/${path}`, op < 80 ? 'GET' : 'HEAD');
            ops++;
            if (res === null && chaos) continue;
            if (res === null || (res.status !== 200 && res.status !== 404)) {
              unexpected.push(`read ${path}: ${res?.status ?? 'no answer'}`);
            } else if (res.status === 200 && op < 80) {
              // Never a torn or foreign body: it is one of the contents, whole.
              const body = gunzipSync(res.body);
              if (!hashes.has(sha(body)) || String(body.length) !== res.headers['logical-size']) {
                unexpected.push(`GET ${path}: a body that is none of the contents`);
              }
            }
          } else {
            const res = await send(
              `${server.url}/list/${prefix}?${pyVersionQuery(version + 10)}`,
              'GET',
            );
            ops++;
            if (res === null && chaos) continue;
            if (res?.status !== 200) unexpected.push(`list: ${res?.status ?? 'no answer'}`);
          }
        }
      };

      const killer = async () => {
        if (!chaos) return;
        let kills = 0;
        try {
          // Kills go on past `ms` until there have been three, within a hard cap.
          const cap = deadline + 60_000;
          while ((Date.now() < deadline - 1500 || kills < 3) && Date.now() < cap) {
            // An instance takes seconds to start (the S3 probe, PostgreSQL; about 4 s on CI): kill often enough for several kills.
            await sleep(700);
            const i = rnd(instances.length);
            const victim = instances[i];
            if (!victim) continue;
            instances[i] = null;
            await victim.stop('SIGKILL');
            kills++;
            instances[i] = await startInstance(i);
          }
        } finally {
          // Even when a restart fails, the workers stop.
          killerDone = true;
        }
        return kills;
      };

      const [kills] = await Promise.all([killer(), ...Array.from({ length: 12 }, worker)]);
      return { possible, unexpected, ops, uncertain, kills: kills ?? 0 };
    }

    async function verify(possible: Map<string, State[]>) {
      // Every path, read through every instance, holds its last acknowledged state.
      for (const server of instances) {
        if (!server) continue;
        for (const [path, states] of possible) {
          const res = await send(`${server.url}/files/${path}`, 'GET');
          expect(res, path).not.toBeNull();
          const observed: State =
            res?.status === 404
              ? { kind: 'absent' }
              : {
                  kind: 'file',
                  hash: sha(gunzipSync(res?.body ?? Buffer.alloc(0))),
                  version: Date.parse(res?.headers['last-modified'] ?? '') / 1000,
                };
          expect(
            states.some((s) => same(s, observed)),
            `${path}: observed ${JSON.stringify(observed)}, expected one of ${JSON.stringify(states)}`,
          ).toBe(true);
        }
      }
      // Invariants, straight from PostgreSQL and the bucket.
      expect(await checkInvariants(meta, blobs, 2)).toEqual([]);
    }

    it('mixed load: no unexpected error, no lost acknowledged write, invariants hold', async () => {
      const { possible, unexpected, ops } = await load('steady', 8000, false);
      console.log(`[${title}] ${ops} operations on ${deployment.instances} instance(s)`);
      expect(unexpected).toEqual([]);
      expect(ops).toBeGreaterThan(200);
      await verify(possible);
    }, 120_000);

    it('concurrent PUTs of one path through all instances end with the highest version', async () => {
      const versions = Array.from({ length: 45 }, (_, i) => 1_700_000_000 + i * 13).sort(
        () => Math.random() - 0.5,
      );
      const up = instances.flatMap((s) => (s ? [s] : []));
      const answers = await Promise.all(
        versions.map((v, i) => {
          const content = Buffer.from(`race ${v}`);
          return send(
            `${(up[i % up.length] as ServerProcess).url}/files/race/one?${pyVersionQuery(v)}`,
            'PUT',
            content,
          );
        }),
      );
      expect(answers.map((a) => a?.status)).toEqual(versions.map(() => 200));
      const highest = Math.max(...versions);
      for (const server of up) {
        const res = await send(`${server.url}/files/race/one`, 'GET');
        expect(res?.headers['last-modified']).toBe(formatVersion(highest));
        expect(gunzipSync(res?.body ?? Buffer.alloc(0)).toString()).toBe(`race ${highest}`);
      }
      const { blobs: rows } = await dumpMetadata(meta);
      expect(
        rows.filter((b) => b.refcount > 0 && b.hash === sha(Buffer.from(`race ${highest}`))),
      ).toHaveLength(1);
      expect(await checkInvariants(meta, blobs, 2)).toEqual([]);
    }, 60_000);

    it('the same load while instances are SIGKILLed and restarted: acknowledged writes survive, invariants hold', async () => {
      const { possible, unexpected, ops, uncertain, kills } = await load('chaos', 10_000, true);
      console.log(
        `[${title}] ${ops} operations, ${kills} instances killed, ${uncertain} writes cut off by a kill`,
      );
      expect(kills).toBeGreaterThanOrEqual(3);
      expect(unexpected).toEqual([]);
      await verify(possible);
      // What an operator runs after such a night: fsck finds the store consistent...
      const commandEnv = { ...env, TEMP_DIR: join(dir.path, 'tmp-cli') };
      const check = await runCli(['fsck'], commandEnv);
      expect(check.code, check.output).toBe(0);
      // ...and past the grace period the cleaner takes what the kills leaked, and nothing else.
      if (deployment.instances === 1) {
        await Promise.all(instances.map((s) => s?.stop()));
        instances = [];
      }
      const cleanup = await runCli(['cleanup', '--offline'], { ...commandEnv, CLEANER_GRACE: '0' });
      expect(cleanup.code, cleanup.output).toBe(0);
      const after = await runCli(['fsck', '--deep'], { ...commandEnv, CLEANER_GRACE: '0' });
      expect(after.code, after.output).toBe(0);
      console.log(`[${title}] after the kills: ${cleanup.stdout.trim()}`);
      expect(await checkInvariants(meta, blobs, 2)).toEqual([]);
    }, 180_000);
  });
}

clusterSuite('three instances on one PostgreSQL and one bucket', postgresAndS3);
clusterSuite(
  'the embedded default under SIGKILL: SQLite and a blob folder, one instance',
  sqliteAndFolder,
);
clusterSuite('one instance on SQLite and a radosgw bucket', sqliteAndS3);
