import { createHash, randomBytes } from 'node:crypto';
import { unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobKey } from '../../src/dedup/keys.js';
import type { CrashPoint } from '../../src/runtime/faults.js';
import { http, pyClient } from '../support/http.js';
import { postgresEnv } from '../support/postgres.js';
import { runCli, type ServerProcess, startServerProcess } from '../support/process.js';
import { emptyBucket, testS3Client } from '../support/s3.js';
import { s3Env } from '../support/server.js';
import { makeTempDir } from '../support/tmp.js';

const V = 1234567890;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Operation =
  | 'put-new'
  | 'put-large'
  | 'put-existing'
  | 'overwrite'
  | 'delete'
  | 'restore'
  | 'cleanup';

export type CrashDeployment = 'filesystem + sqlite' | 's3 (radosgw) + postgres';

/** Each crash point with the write that reaches it, per deployment. */
const CASES: Record<CrashDeployment, Array<[CrashPoint, Operation]>> = {
  'filesystem + sqlite': [
    ['put.checked', 'put-new'],
    ['fs.temp-written', 'put-new'],
    ['fs.linked', 'put-new'],
    ['put.object-stored', 'put-new'],
    ['put.committed', 'put-new'],
    ['put.checked', 'put-existing'],
    ['put.committed', 'put-existing'],
    ['put.committed', 'overwrite'],
    ['delete.committed', 'delete'],
    ['put.object-restored', 'restore'],
    ['cleaner.rows-deleted', 'cleanup'],
    ['cleaner.objects-deleted', 'cleanup'],
  ],
  's3 (radosgw) + postgres': [
    ['put.checked', 'put-new'],
    ['s3.parts-uploaded', 'put-large'],
    ['put.object-stored', 'put-large'],
    ['put.object-stored', 'put-new'],
    ['put.committed', 'put-new'],
    ['put.committed', 'put-existing'],
    ['put.committed', 'overwrite'],
    ['delete.committed', 'delete'],
    ['put.object-restored', 'restore'],
    ['cleaner.rows-deleted', 'cleanup'],
    ['cleaner.objects-deleted', 'cleanup'],
  ],
};

/**
 * Issue #11, crash safety: whatever step of a write path the process dies
 * at, after a restart fsck finds the store consistent, every acknowledged
 * write reads back, and the cleaner reclaims what the crash leaked (the
 * bucket then holds exactly the referenced blobs). One file per deployment
 * (crash.*.test.ts), so that the two can run side by side.
 */
export const crashSuite = (deployment: CrashDeployment) =>
  describe(`a crash at every step (${deployment})`, () => {
    let dir: { path: string; remove(): Promise<void> };
    let env: Record<string, string>;
    /** What every path holds after the writes acknowledged so far (null: deleted). */
    const acknowledged = new Map<string, Buffer | null>();
    let n = 0;

    beforeAll(async () => {
      dir = await makeTempDir();
      const stores: Record<string, string> =
        deployment === 'filesystem + sqlite'
          ? {
              STORAGE_TYPE: 'filesystem',
              STORAGE_PATH: join(dir.path, 'blobs'),
              SQLITE_PATH: join(dir.path, 'kv.db'),
            }
          : { ...s3Env(), ...(await postgresEnv()), S3_PART_SIZE: String(5 * 1024 * 1024) };
      env = { ...stores, TEMP_DIR: join(dir.path, 'tmp'), CLEANER_ENABLED: 'false' };
    });
    afterAll(async () => {
      if (env?.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME);
      await dir?.remove();
    });

    async function acknowledge(url: string, path: string, content: Buffer | null) {
      const res = content
        ? await pyClient.put(url, path, content, V + n)
        : await pyClient.delete(url, path, V + n);
      expect(res.status, `${path}`).toBe(200);
      acknowledged.set(path, content);
    }

    /** Removes a blob's object behind the server's back. */
    async function loseObject(content: Buffer) {
      const key = blobKey(sha(content), 2);
      if (env.STORAGE_PATH) {
        await unlink(join(env.STORAGE_PATH, key));
      } else {
        const client = testS3Client();
        await client.send(new DeleteObjectCommand({ Bucket: env.BUCKET_NAME, Key: key }));
        client.destroy();
      }
    }

    async function fsck(extra: Record<string, string> = {}) {
      return runCli(['fsck'], { ...env, ...extra });
    }

    it.each(CASES[deployment])(
      'dies at %s during %s',
      async (point, operation) => {
        n++;
        const base = `/crash/${n}`;
        const shared = randomBytes(20_000);
        const fresh = randomBytes(operation === 'put-large' ? 12 * 1024 * 1024 : 150_000);
        // The state before, acknowledged by a server that does not crash.
        let healthy: ServerProcess = await startServerProcess(env);
        try {
          await acknowledge(healthy.url, `${base}/shared`, shared);
          if (operation === 'overwrite' || operation === 'delete')
            await acknowledge(healthy.url, `${base}/target`, shared);
          if (operation === 'cleanup') {
            await acknowledge(healthy.url, `${base}/gone`, fresh);
            await acknowledge(healthy.url, `${base}/gone`, null);
          }
          if (operation === 'restore') {
            await acknowledge(healthy.url, `${base}/lost`, fresh);
            await loseObject(fresh);
            expect((await http(`${healthy.url}/files${base}/lost`)).status).toBe(500);
          }
        } finally {
          await healthy.stop();
        }

        // The write, in a process that dies at `point`.
        if (operation === 'cleanup') {
          const run = await runCli(['cleanup', '--offline'], {
            ...env,
            CLEANER_GRACE: '0',
            S3DEDUP_CRASH_AT: point,
          });
          expect(run.code, run.output).toBeNull();
        } else {
          const doomed = await startServerProcess({ ...env, S3DEDUP_CRASH_AT: point });
          const body = operation === 'put-existing' ? shared : fresh;
          const path =
            operation === 'overwrite' || operation === 'delete' ? `${base}/target` : `${base}/new`;
          const request =
            operation === 'delete'
              ? pyClient.delete(doomed.url, path, V + n + 1)
              : operation === 'overwrite'
                ? pyClient.put(doomed.url, path, fresh, V + n + 1)
                : pyClient.put(doomed.url, path, body, V + n + 1, operation !== 'put-large');
          await expect(request).rejects.toThrow();
          expect(await doomed.stop()).toBeNull();
        }

        // After a restart: consistent, and every acknowledged write reads back.
        healthy = await startServerProcess(env);
        try {
          const check = await fsck();
          expect(check.code, check.output).toBe(0);
          for (const [path, content] of acknowledged) {
            if (operation === 'restore' && path === `${base}/lost`) continue;
            if (operation === 'overwrite' && path === `${base}/target`) continue; // old or new: both fine
            if (operation === 'delete' && path === `${base}/target`) continue;
            const got = await pyClient.get(healthy.url, path);
            if (content === null) expect(got.status, path).toBe(404);
            else expect(got.content.equals(content), path).toBe(true);
          }
          // The write that was not acknowledged: all or nothing.
          if (operation !== 'cleanup') {
            const targeted = operation === 'overwrite' || operation === 'delete';
            const before = targeted ? shared : null;
            const written =
              operation === 'delete' ? null : operation === 'put-existing' ? shared : fresh;
            const path = targeted ? `${base}/target` : `${base}/new`;
            const got = await pyClient.get(healthy.url, path);
            const states = [before, written];
            if (got.status === 200) expect(states.some((c) => c?.equals(got.content))).toBe(true);
            else {
              expect(got.status).toBe(404);
              expect(states).toContain(null);
            }
            // Whichever it is, it is what later cases must read back.
            acknowledged.set(path, got.status === 200 ? got.content : null);
          }
          if (operation === 'restore') {
            // Either restored, or still recorded as lost (a PUT of the content would restore it).
            const lost = await pyClient.get(healthy.url, `${base}/lost`);
            if (lost.status === 200) expect(lost.content.equals(fresh)).toBe(true);
            else expect(lost.status).toBe(500);
            // Later cases' fsck must not find it lost: give it back.
            await acknowledge(healthy.url, `${base}/lost`, fresh);
          }
        } finally {
          await healthy.stop();
        }

        // Past the grace period the cleaner reclaims the leaks: the bucket holds exactly the referenced blobs.
        const cleanup = await runCli(['cleanup', '--offline'], { ...env, CLEANER_GRACE: '0' });
        expect(cleanup.code, cleanup.output).toBe(0);
        const final = await runCli(['fsck', '--json'], { ...env, CLEANER_GRACE: '0' });
        expect(final.code, final.output).toBe(0);
        const report = JSON.parse(final.stdout) as { blobs: number; objects: number };
        expect(report.objects).toBe(report.blobs);
      },
      120_000,
    );
  });
