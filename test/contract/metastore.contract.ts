import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MetaStore } from '../../src/metastore/port.js';

export interface MetaStoreHarness {
  /** A store over an empty database. */
  open(): Promise<MetaStore>;
  /** Drops everything between tests. */
  reset(store: MetaStore): Promise<void>;
  /** Runs one SQL statement (the same text in both dialects) behind the store's back. */
  sql(store: MetaStore, statement: string): Promise<void>;
  close(): Promise<void>;
}

const h1 = '1'.repeat(64);
const h2 = '2'.repeat(64);
const h3 = '3'.repeat(64);
const blob = (hash: string, logicalSize = 10, storedSize = 30) => ({
  hash,
  logicalSize,
  storedSize,
});

/** The behaviour every MetaStore (SQLite, PostgreSQL) must have. */
export function metaStoreContract(name: string, harness: () => Promise<MetaStoreHarness>): void {
  describe(`MetaStore contract: ${name}`, () => {
    let h: MetaStoreHarness;
    let m: MetaStore;
    beforeAll(async () => {
      h = await harness();
      m = await h.open();
    });
    afterAll(async () => {
      await m?.close();
      await h?.close();
    });
    beforeEach(async () => {
      await h.reset(m);
    });

    it('answers null for unknown files and blobs', async () => {
      expect(await m.getFile('nope')).toBeNull();
      expect(await m.getBlob(h1)).toBeNull();
    });

    it('creates a file and its blob with refcount 1', async () => {
      const r = await m.putFile({ path: 'a/b', version: 100, blob: blob(h1, 11, 31), now: 5000 });
      expect(r).toEqual({ applied: true, version: 100 });
      expect(await m.getFile('a/b')).toEqual({
        path: 'a/b',
        hash: h1,
        version: 100,
        logicalSize: 11,
        storedSize: 31,
      });
      expect(await m.getBlob(h1)).toEqual({
        hash: h1,
        refcount: 1,
        logicalSize: 11,
        storedSize: 31,
        zeroSince: null,
        damage: null,
      });
    });

    it('keeps a newer version and reports it; an equal or newer version overwrites', async () => {
      await m.putFile({ path: 'p', version: 100, blob: blob(h1), now: 1 });
      expect(await m.putFile({ path: 'p', version: 99, blob: blob(h2), now: 2 })).toEqual({
        applied: false,
        version: 100,
      });
      expect((await m.getFile('p'))?.hash).toBe(h1);
      // The rejected upload's blob is still recorded (unreferenced) so the cleaner can find its object.
      expect(await m.getBlob(h2)).toMatchObject({ refcount: 0, zeroSince: 2 });

      expect(await m.putFile({ path: 'p', version: 100, blob: blob(h2), now: 3 })).toEqual({
        applied: true,
        version: 100,
      });
      expect((await m.getFile('p'))?.hash).toBe(h2);
      expect(await m.getBlob(h1)).toMatchObject({ refcount: 0, zeroSince: 3 });
      expect(await m.getBlob(h2)).toMatchObject({ refcount: 1, zeroSince: null });

      expect(await m.putFile({ path: 'p', version: 101, blob: blob(h2), now: 4 })).toEqual({
        applied: true,
        version: 101,
      });
      expect(await m.getBlob(h2)).toMatchObject({ refcount: 1 });
    });

    it('accepts negative (pre-1970) versions', async () => {
      await m.putFile({ path: 'old', version: -86400, blob: blob(h1), now: 1 });
      expect((await m.getFile('old'))?.version).toBe(-86400);
      expect(await m.putFile({ path: 'old', version: -86401, blob: blob(h1), now: 1 })).toEqual({
        applied: false,
        version: -86400,
      });
    });

    it('counts references exactly across paths sharing content', async () => {
      await m.putFile({ path: 'x1', version: 1, blob: blob(h1), now: 1 });
      await m.putFile({ path: 'x2', version: 1, blob: blob(h1), now: 1 });
      await m.putFile({ path: 'x3', version: 1, blob: blob(h1), now: 1 });
      expect((await m.getBlob(h1))?.refcount).toBe(3);
      await m.putFile({ path: 'x2', version: 2, blob: blob(h3), now: 1 });
      expect((await m.getBlob(h1))?.refcount).toBe(2);
      expect(await m.deleteFile({ path: 'x1', version: 5, now: 7 })).toEqual({
        outcome: 'deleted',
        version: 1,
      });
      expect(await m.getBlob(h1)).toMatchObject({ refcount: 1, zeroSince: null });
      await m.deleteFile({ path: 'x3', version: 5, now: 8 });
      expect(await m.getBlob(h1)).toMatchObject({ refcount: 0, zeroSince: 8 });
      // Reuse of an unreferenced blob clears zeroSince.
      await m.putFile({ path: 'x4', version: 1, blob: blob(h1), now: 9 });
      expect(await m.getBlob(h1)).toMatchObject({ refcount: 1, zeroSince: null });
    });

    it('refuses to point a path at a known blob whose row is gone, and changes nothing', async () => {
      await m.putFile({ path: 'k', version: 1, blob: blob(h1), now: 1 });
      await expect(
        m.putFile({ path: 'k', version: 2, blob: { ...blob(h2), known: true }, now: 2 }),
      ).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
      expect(await m.getBlob(h2)).toBeNull();
      expect(await m.getFile('k')).toMatchObject({ hash: h1, version: 1 });
      expect((await m.getBlob(h1))?.refcount).toBe(1);
      // A known blob that does exist is used as it is.
      await m.putFile({
        path: 'k2',
        version: 1,
        blob: { ...blob(h1, 99, 99), known: true },
        now: 3,
      });
      expect(await m.getBlob(h1)).toMatchObject({ refcount: 2, logicalSize: 10 });
    });

    it('keeps the first sizes recorded for a blob', async () => {
      await m.putFile({ path: 's1', version: 1, blob: blob(h1, 10, 20), now: 1 });
      await m.putFile({ path: 's2', version: 1, blob: blob(h1, 10, 99), now: 1 });
      expect(await m.getFile('s2')).toMatchObject({ storedSize: 20 });
    });

    it('deletes by version rules', async () => {
      expect(await m.deleteFile({ path: 'none', version: 1, now: 1 })).toEqual({
        outcome: 'absent',
      });
      await m.putFile({ path: 'd', version: 50, blob: blob(h1), now: 1 });
      expect(await m.deleteFile({ path: 'd', version: 49, now: 2 })).toEqual({
        outcome: 'kept',
        version: 50,
      });
      expect((await m.getFile('d'))?.version).toBe(50);
      expect(await m.deleteFile({ path: 'd', version: 50, now: 3 })).toEqual({
        outcome: 'deleted',
        version: 50,
      });
      expect(await m.getFile('d')).toBeNull();
    });

    it('lists a directory recursively, bytewise sorted, with an inclusive version cutoff', async () => {
      const paths = [
        'dir/b',
        'dir/a',
        'dir/sub/c',
        'dir/Z',
        'dir/ż',
        'dir/\u{1F600}',
        'dir/\uFFFD',
        'dirt/x',
        'di',
        'other/dir/y',
      ];
      for (const [i, path] of paths.entries())
        await m.putFile({ path, version: 100 + i, blob: blob(h1), now: 1 });
      const all = await m.listFiles({ prefix: 'dir/', maxVersion: 1000, after: null, limit: 100 });
      // UTF-8 byte order: U+FFFD (EF BF BD) sorts before U+1F600 (F0 ...), unlike UTF-16 order.
      expect(all).toEqual([
        'dir/Z',
        'dir/a',
        'dir/b',
        'dir/sub/c',
        'dir/ż',
        'dir/\uFFFD',
        'dir/\u{1F600}',
      ]);
      const cut = await m.listFiles({ prefix: 'dir/', maxVersion: 102, after: null, limit: 100 });
      expect(cut).toEqual(['dir/a', 'dir/b', 'dir/sub/c']);
      const root = await m.listFiles({ prefix: '', maxVersion: 1000, after: null, limit: 100 });
      expect(root).toHaveLength(paths.length);
    });

    it('treats LIKE wildcards in directory names literally', async () => {
      for (const path of ['a%/x', 'ab/y', 'a_/z', 'aX/w'])
        await m.putFile({ path, version: 1, blob: blob(h1), now: 1 });
      expect(await m.listFiles({ prefix: 'a%/', maxVersion: 9, after: null, limit: 10 })).toEqual([
        'a%/x',
      ]);
      expect(await m.listFiles({ prefix: 'a_/', maxVersion: 9, after: null, limit: 10 })).toEqual([
        'a_/z',
      ]);
    });

    it('is case-sensitive', async () => {
      await m.putFile({ path: 'Dir/x', version: 1, blob: blob(h1), now: 1 });
      expect(await m.getFile('dir/x')).toBeNull();
      expect(await m.listFiles({ prefix: 'dir/', maxVersion: 9, after: null, limit: 10 })).toEqual(
        [],
      );
    });

    it('pages with after/limit', async () => {
      for (let i = 0; i < 25; i++) {
        await m.putFile({
          path: `pg/${String(i).padStart(2, '0')}`,
          version: 1,
          blob: blob(h1),
          now: 1,
        });
      }
      const seen: string[] = [];
      let after: string | null = null;
      for (;;) {
        const page = await m.listFiles({ prefix: 'pg/', maxVersion: 9, after, limit: 10 });
        seen.push(...page);
        if (page.length < 10) break;
        after = page[page.length - 1] ?? null;
      }
      expect(seen).toEqual(
        Array.from({ length: 25 }, (_, i) => `pg/${String(i).padStart(2, '0')}`),
      );
    });

    it('answers its health check', async () => {
      await expect(m.check()).resolves.toBeUndefined();
    });
  });
}
