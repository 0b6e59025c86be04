import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Cleaner, type CleanerItem } from '../../src/cleaner/cleaner.js';
import { blobKey } from '../../src/dedup/keys.js';
import { FileService } from '../../src/dedup/service.js';
import { backendUnavailable } from '../../src/errors.js';
import type { MetaStore } from '../../src/metastore/port.js';
import { http, pyClient } from '../support/http.js';
import { checkInvariants, execSql } from '../support/invariants.js';
import { type BackendProfile, startTestServer, type TestServer } from '../support/server.js';
import { listObjects, snapshot } from '../support/state.js';

const V = 1234567890;
const HOUR = 3_600_000;
/** 9999-12-31T23:59:59Z: a DELETE with it removes whatever version is stored. */
const LAST_VERSION = 253402300799;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * SPEC §6 and issue #11: the cleaner deletes what nobody references once
 * the grace period is over, and nothing else, whatever fails.
 */
export function cleanerSuite(profile: BackendProfile): void {
  describe(`cleaner over ${profile.name}`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await startTestServer(profile);
    });
    afterAll(async () => {
      await srv?.close();
    });
    beforeEach(async () => {
      // Each test starts from an empty store: every path deleted, then everything cleaned.
      const listing = (await http(`${srv.url}/list/`)).body.toString();
      for (const path of listing.split('\n').filter(Boolean)) {
        expect((await pyClient.delete(srv.url, `/${path}`, LAST_VERSION)).status).toBe(200);
      }
      await new Cleaner(options({ graceMs: 0, now: () => Date.now() + 10 * HOUR })).run();
      expect(await snapshot(srv)).toBe(
        JSON.stringify({ meta: { files: [], blobs: [] }, objects: [] }),
      );
    });

    function options(over: Partial<ConstructorParameters<typeof Cleaner>[0]> = {}) {
      const { meta, blobs, locks } = srv.server.backends;
      return {
        meta,
        blobs,
        locks,
        logger: pino({ level: 'silent' }),
        keyDepth: srv.config.S3_KEY_SHARDING_DEPTH,
        graceMs: HOUR,
        batchSize: 3,
        maxDeletes: 1000,
        lockTimeoutMs: 1000,
        ...over,
      };
    }
    const key = (content: Buffer) => blobKey(sha(content), srv.config.S3_KEY_SHARDING_DEPTH);
    const keys = async () =>
      (await listObjects(srv.server.backends.blobs)).map((k) => k.split(':')[0]);
    const invariants = () =>
      checkInvariants(
        srv.server.backends.meta,
        srv.server.backends.blobs,
        srv.config.S3_KEY_SHARDING_DEPTH,
      );

    /** Stores `n` contents under paths, then deletes the paths of the first `unreferenced`. */
    async function store(n: number, unreferenced: number): Promise<Buffer[]> {
      const contents = Array.from({ length: n }, () => randomBytes(2000));
      for (const [i, c] of contents.entries()) {
        expect((await pyClient.put(srv.url, `/c/${i}`, c, V)).status).toBe(200);
      }
      for (let i = 0; i < unreferenced; i++) {
        expect((await pyClient.delete(srv.url, `/c/${i}`, V)).status).toBe(200);
      }
      return contents;
    }

    /** An object under the blob layout with no metadata, as an upload that crashed leaves it. */
    async function orphan(): Promise<string> {
      const k = blobKey(sha(randomBytes(16)), srv.config.S3_KEY_SHARDING_DEPTH);
      await srv.server.backends.blobs.put(k, Readable.from([randomBytes(100)]), {});
      return k;
    }

    it('keeps unreferenced blobs and orphans for CLEANER_GRACE, then deletes them', async () => {
      const contents = await store(3, 2);
      const lost = await orphan();
      const before = await keys();
      // 59 minutes later: all still there.
      const early = await new Cleaner(options({ now: () => Date.now() + HOUR - 60_000 })).run();
      expect(early).toMatchObject({ ran: true, deletedBlobs: 0, deletedOrphans: 0 });
      expect(await keys()).toEqual(before);
      // Past the grace period: the two unreferenced blobs and the orphan go, the rest stays.
      const late = await new Cleaner(options({ now: () => Date.now() + HOUR + 60_000 })).run();
      expect(late).toMatchObject({ ran: true, deletedBlobs: 2, deletedOrphans: 1, limited: false });
      expect(late.freedBytes).toBeGreaterThan(0);
      expect(await keys()).toEqual([key(contents[2] as Buffer)]);
      expect(before).toContain(lost);
      expect((await pyClient.get(srv.url, '/c/2')).status).toBe(200);
      expect(await srv.server.backends.meta.getBlob(sha(contents[0] as Buffer))).toBeNull();
      expect(await invariants()).toEqual([]);
    });

    it('never touches keys outside the blob layout', async () => {
      const { blobs } = srv.server.backends;
      const outside = [
        'notes/readme.txt',
        'ab/cd/not-a-hash',
        `${'a'.repeat(64)}`,
        `.s3dedup-probe/x`,
      ];
      for (const k of outside) await blobs.put(k, Readable.from([Buffer.from('keep me')]), {});
      const report = await new Cleaner(options({ graceMs: 0, now: () => Date.now() + HOUR })).run();
      expect(report.deletedOrphans).toBe(0);
      expect((await keys()).sort()).toEqual([...outside].sort());
      for (const k of outside) await blobs.delete(k);
    });

    it('dry run: lists what would go and deletes nothing', async () => {
      await store(4, 3);
      const lost = await orphan();
      const before = await snapshot(srv);
      const items: CleanerItem[] = [];
      const report = await new Cleaner(options({ now: () => Date.now() + 2 * HOUR })).run({
        dryRun: true,
        onItem: (i) => items.push(i),
      });
      expect(report).toMatchObject({ ran: true, dryRun: true, deletedBlobs: 3, deletedOrphans: 1 });
      expect(items.filter((i) => i.kind === 'unreferenced')).toHaveLength(3);
      expect(items.filter((i) => i.kind === 'orphan').map((i) => i.key)).toEqual([lost]);
      expect(await snapshot(srv)).toBe(before);
    });

    it('deletes at most CLEANER_MAX_DELETES a run, and the next run goes on', async () => {
      await store(7, 5);
      await orphan();
      const later = () => Date.now() + 2 * HOUR;
      const first = await new Cleaner(options({ maxDeletes: 4, now: later })).run();
      expect(first.deletedBlobs + first.deletedOrphans).toBe(4);
      expect(first.limited).toBe(true);
      const second = await new Cleaner(options({ maxDeletes: 4, now: later })).run();
      expect(second.deletedBlobs + second.deletedOrphans).toBe(2);
      expect(second.limited).toBe(false);
      expect(await keys()).toHaveLength(2);
      expect(await invariants()).toEqual([]);
    });

    it('one cleaner at a time: a run while another holds the cleaner lock does nothing', async () => {
      await store(2, 2);
      const other = srv.server.backends.locks.session();
      await other.acquire('cleaner', 'exclusive', { timeoutMs: 1000 });
      try {
        const report = await new Cleaner(options({ now: () => Date.now() + 2 * HOUR })).run();
        expect(report).toMatchObject({ ran: false, deletedBlobs: 0 });
        expect(await keys()).toHaveLength(2);
      } finally {
        await other.end();
      }
      expect((await new Cleaner(options({ now: () => Date.now() + 2 * HOUR })).run()).ran).toBe(
        true,
      );
    });

    /** The real store, with one method failing as a database going away does. */
    function failing(method: keyof MetaStore, afterCalls = 0): MetaStore {
      const real = srv.server.backends.meta;
      let calls = 0;
      return new Proxy(real, {
        get(target, prop, receiver) {
          const value = Reflect.get(target, prop, receiver) as unknown;
          if (prop !== method || typeof value !== 'function') return value;
          return (...args: unknown[]) => {
            if (calls++ >= afterCalls) {
              return Promise.reject(backendUnavailable('database', 'injected failure'));
            }
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        },
      });
    }

    it.each([
      ['listing unreferenced blobs', 'listUnreferenced', 0],
      ['deleting rows', 'deleteUnreferenced', 0],
      ['the second batch of rows', 'deleteUnreferenced', 1],
      ['looking up orphans', 'existingBlobs', 0],
      ['checking orphans again under their locks', 'existingBlobs', 1],
    ] as const)(
      'a database failing while %s ends the run and deletes nothing referenced',
      async (_n, method, after) => {
        const contents = await store(8, 5);
        await orphan();
        const referenced = contents.slice(5).map(key);
        await expect(
          new Cleaner(
            options({ meta: failing(method, after), now: () => Date.now() + 2 * HOUR }),
          ).run(),
        ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
        const left = await keys();
        for (const k of referenced) expect(left).toContain(k);
        // No row lost its object: every blob with a row still has one.
        expect(await invariants()).toEqual([]);
        for (let i = 5; i < 8; i++)
          expect((await pyClient.get(srv.url, `/c/${i}`)).status).toBe(200);
      },
    );

    it('never deletes a blob that paths point at, even when its count says nobody does', async () => {
      const [content] = await store(1, 0);
      const hash = sha(content as Buffer);
      // A count gone wrong (what fsck --repair fixes): refcount 0, yet a path points at it.
      await execSql(
        srv.server.backends.meta,
        `UPDATE blobs SET refcount = 0, zero_since = 1 WHERE hash = '${hash}'`,
      );
      // The run goes on past it (the orphan beside it is taken), and it stays.
      const lost = await orphan();
      const report = await new Cleaner(options({ now: () => Date.now() + 2 * HOUR })).run();
      expect(report).toMatchObject({ deletedBlobs: 0, deletedOrphans: 1 });
      expect(await srv.server.backends.blobs.stat(lost)).toBeNull();
      expect((await pyClient.get(srv.url, '/c/0')).status).toBe(200);
      await srv.server.backends.meta.recount(hash, Date.now());
      expect(await invariants()).toEqual([]);
    });

    it('an object a PUT has just stored is no orphan to the cleaner, even with CLEANER_GRACE=0', async () => {
      // The cleaner runs in the gap between the new object's creation and its row.
      const { meta, blobs, locks } = srv.server.backends;
      const cleaner = new Cleaner(options({ graceMs: 0, lockTimeoutMs: 50 }));
      let removed = 0;
      const racing = new Proxy(blobs, {
        get(target, prop, receiver) {
          if (prop !== 'put') return Reflect.get(target, prop, receiver);
          return async (...args: Parameters<typeof blobs.put>) => {
            const stored = await target.put(...args);
            const report = await cleaner.run();
            removed += report.deletedOrphans;
            return stored;
          };
        },
      });
      const service = new FileService({
        meta,
        blobs: racing,
        locks,
        logger: pino({ level: 'silent' }),
        keyDepth: srv.config.S3_KEY_SHARDING_DEPTH,
        maxUploadSize: 1 << 20,
        gzipLevel: 1,
        verifyHints: true,
        tempDir: srv.config.TEMP_DIR,
        spillThreshold: 1 << 20,
        lockTimeoutMs: 1000,
      });
      for (const size of [1000, 200_000]) {
        const content = randomBytes(size);
        await service.put({
          path: `gap/${size}`,
          version: V,
          body: Readable.from([content]),
          encoding: 'identity',
          hints: { sha256: sha(content) },
          declaredLength: content.length,
        });
        expect((await pyClient.get(srv.url, `/gap/${size}`)).content.equals(content)).toBe(true);
      }
      expect(removed).toBe(0);
      expect(await invariants()).toEqual([]);
    });

    it('cleaning all the time beside PUTs and DELETEs of shared contents loses nothing', async () => {
      const contents = Array.from({ length: 4 }, () => randomBytes(3000));
      const cleaner = new Cleaner(options({ graceMs: 0, batchSize: 2 }));
      let running = true;
      const cleaning = (async () => {
        while (running) await cleaner.run();
      })();
      const acknowledged = new Map<string, Buffer | null>();
      await Promise.all(
        Array.from({ length: 4 }, async (_, worker) => {
          for (let i = 0; i < 40; i++) {
            const path = `/busy/${worker}/${i % 3}`;
            const content = contents[(worker + i) % contents.length] as Buffer;
            if (i % 4 === 3) {
              const res = await pyClient.delete(srv.url, path, V + i);
              if (res.status === 200) acknowledged.set(path, null);
            } else {
              const res = await pyClient.put(srv.url, path, content, V + i);
              // 503 "collected during the upload" is allowed (the client retries); nothing else.
              expect([200, 503]).toContain(res.status);
              if (res.status === 200) acknowledged.set(path, content);
            }
          }
        }),
      );
      running = false;
      await cleaning;
      for (const [path, content] of acknowledged) {
        const got = await pyClient.get(srv.url, path);
        if (content === null) expect(got.status).toBe(404);
        else expect(got.content.equals(content)).toBe(true);
      }
      expect(await invariants()).toEqual([]);
    }, 60_000);

    it('the server runs it every CLEANER_INTERVAL and counts it in /metrics', async () => {
      const scheduled = await startTestServer(profile, {
        CLEANER_ENABLED: 'true',
        CLEANER_INTERVAL: '1',
        CLEANER_GRACE: '0',
      });
      try {
        const content = randomBytes(500);
        expect((await pyClient.put(scheduled.url, '/s/x', content, V)).status).toBe(200);
        expect((await pyClient.delete(scheduled.url, '/s/x', V)).status).toBe(200);
        const deadline = Date.now() + 15_000;
        let text = '';
        while (Date.now() < deadline) {
          text = (await http(`${scheduled.url}/metrics`)).body.toString();
          if (
            /s3dedup_cleaner_deleted_blobs_total 1/.test(text) &&
            /s3dedup_cleaner_runs_total\{outcome="completed"\} [1-9]/.test(text)
          )
            break;
          await new Promise((r) => setTimeout(r, 200));
        }
        expect(text).toMatch(/s3dedup_cleaner_runs_total\{outcome="completed"\} [1-9]/);
        expect(text).toMatch(/s3dedup_cleaner_deleted_blobs_total 1/);
        expect(text).toMatch(/s3dedup_cleaner_freed_bytes_total [1-9]/);
        expect(text).toMatch(/s3dedup_cleaner_last_run_timestamp_seconds [1-9]/);
        expect(await scheduled.server.backends.meta.getBlob(sha(content))).toBeNull();
      } finally {
        await scheduled.close();
      }
    });
  });
}
