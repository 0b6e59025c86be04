import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { MetaStore } from '../../src/metastore/port.js';
import type { MetaStoreHarness } from './metastore.contract.js';

const hash = (n: number) => n.toString(16).padStart(64, '0');
const blob = (n: number, logicalSize = 10, storedSize = 4) => ({
  hash: hash(n),
  logicalSize,
  storedSize,
});

/** The BlobCatalog part of the MetaStore port: what the cleaner, fsck and stats rely on. */
export function blobCatalogContract(name: string, harness: () => Promise<MetaStoreHarness>): void {
  describe(`BlobCatalog contract: ${name}`, () => {
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

    /** A blob whose last path went away at `now`. */
    async function unreferenced(n: number, now: number) {
      await m.putFile({ path: `u/${n}`, version: 1, blob: blob(n), now });
      await m.deleteFile({ path: `u/${n}`, version: 1, now });
    }

    it('lists unreferenced blobs older than a cutoff, oldest first, page by page', async () => {
      for (const [n, at] of [
        [1, 300],
        [2, 100],
        [3, 100],
        [4, 200],
        [5, 900],
      ] as const)
        await unreferenced(n, at);
      await m.putFile({ path: 'kept', version: 1, blob: blob(6), now: 50 });
      const seen: string[] = [];
      let after: { zeroSince: number; hash: string } | null = null;
      for (;;) {
        const page = await m.listUnreferenced({ before: 300, after, limit: 2 });
        seen.push(...page.map((b) => b.hash));
        const last = page[page.length - 1];
        if (!last) break;
        after = { zeroSince: last.zeroSince ?? 0, hash: last.hash };
      }
      expect(seen).toEqual([hash(2), hash(3), hash(4), hash(1)]);
    });

    it('deletes unreferenced rows only while they stay unreferenced and old enough', async () => {
      await unreferenced(1, 100);
      await unreferenced(2, 100);
      await unreferenced(3, 500);
      // Referenced again after it was listed: keeps its row.
      await m.putFile({ path: 'again', version: 1, blob: blob(2), now: 200 });
      const deleted = await m.deleteUnreferenced([hash(1), hash(2), hash(3), hash(9)], 300);
      expect(deleted.map((b) => b.hash)).toEqual([hash(1)]);
      expect(deleted[0]?.storedSize).toBe(4);
      expect(await m.getBlob(hash(1))).toBeNull();
      expect((await m.getBlob(hash(2)))?.refcount).toBe(1);
      expect(await m.getBlob(hash(3))).not.toBeNull();
    });

    it('never deletes a row that paths point at, whatever its count says, and deletes the others', async () => {
      await m.putFile({ path: 'p', version: 1, blob: blob(1), now: 1 });
      await unreferenced(2, 1);
      await h.sql(m, `UPDATE blobs SET refcount = 0, zero_since = 1 WHERE hash = '${hash(1)}'`);
      const deleted = await m.deleteUnreferenced([hash(1), hash(2)], 10);
      expect(deleted.map((b) => b.hash)).toEqual([hash(2)]);
      expect(await m.getFile('p')).not.toBeNull();
      expect(await m.getBlob(hash(1))).not.toBeNull();
    });

    it('tells which blobs have rows, and lists them all by hash', async () => {
      for (const n of [3, 1, 2])
        await m.putFile({ path: `p${n}`, version: 1, blob: blob(n), now: 1 });
      expect(await m.existingBlobs([hash(1), hash(3), hash(7)])).toEqual(
        new Set([hash(1), hash(3)]),
      );
      expect(await m.existingBlobs([])).toEqual(new Set());
      const first = await m.listBlobs({ after: null, limit: 2 });
      expect(first.map((b) => b.hash)).toEqual([hash(1), hash(2)]);
      const rest = await m.listBlobs({ after: hash(2), limit: 2 });
      expect(rest.map((b) => b.hash)).toEqual([hash(3)]);
    });

    it('counts paths, reads a count beside its paths, and recounts', async () => {
      for (const p of ['a', 'b', 'c'])
        await m.putFile({ path: p, version: 1, blob: blob(1), now: 1 });
      await m.putFile({ path: 'd', version: 1, blob: blob(2), now: 1 });
      expect(await m.countPaths([hash(1), hash(2), hash(3)])).toEqual(
        new Map([
          [hash(1), 3],
          [hash(2), 1],
        ]),
      );
      await h.sql(m, `UPDATE blobs SET refcount = 7 WHERE hash = '${hash(1)}'`);
      expect(await m.referenceCount(hash(1))).toEqual({
        hash: hash(1),
        refcount: 7,
        paths: 3,
        zeroSince: null,
      });
      await m.recount(hash(1), 50);
      expect(await m.referenceCount(hash(1))).toMatchObject({ refcount: 3, paths: 3 });
      // A count of paths that are gone: recounted to 0, and it becomes the cleaner's.
      await h.sql(m, `DELETE FROM files WHERE hash = '${hash(2)}'`);
      await m.recount(hash(2), 60);
      expect(await m.referenceCount(hash(2))).toEqual({
        hash: hash(2),
        refcount: 0,
        paths: 0,
        zeroSince: 60,
      });
      expect(await m.referenceCount(hash(9))).toBeNull();
    });

    it('lists the paths of a blob', async () => {
      for (const p of ['z', 'a/b', 'm'])
        await m.putFile({ path: p, version: 1, blob: blob(1), now: 1 });
      expect(await m.pathsOf(hash(1), 2)).toEqual(['a/b', 'm']);
      expect(await m.pathsOf(hash(2), 5)).toEqual([]);
    });

    it("marks damage, and clears it with the restored object's size", async () => {
      await m.putFile({ path: 'a', version: 1, blob: blob(1, 10, 4), now: 1 });
      await m.markDamage(hash(1), 'missing');
      expect((await m.getBlob(hash(1)))?.damage).toBe('missing');
      await m.markDamage(hash(1), 'corrupt');
      expect((await m.getBlob(hash(1)))?.damage).toBe('corrupt');
      expect(await m.markRestored(hash(1), 6)).toBe(true);
      expect(await m.getBlob(hash(1))).toMatchObject({ damage: null, storedSize: 6, refcount: 1 });
      expect((await m.getFile('a'))?.storedSize).toBe(6);
      // A blob whose row is gone: nothing to restore.
      expect(await m.markRestored(hash(3), 6)).toBe(false);
      expect(await m.getBlob(hash(3))).toBeNull();
    });

    it('drops a lost blob with every path pointing at it, and nothing else', async () => {
      for (const p of ['x/1', 'x/2'])
        await m.putFile({ path: p, version: 1, blob: blob(1), now: 1 });
      await m.putFile({ path: 'y', version: 1, blob: blob(2), now: 1 });
      expect(await m.dropBlob(hash(1))).toBe(2);
      expect(await m.getFile('x/1')).toBeNull();
      expect(await m.getBlob(hash(1))).toBeNull();
      expect(await m.getFile('y')).not.toBeNull();
      expect(await m.dropBlob(hash(1))).toBe(0);
    });

    it('adds up the store', async () => {
      expect(await m.totals()).toEqual({
        files: 0,
        logicalBytes: 0,
        blobs: 0,
        uniqueLogicalBytes: 0,
        storedBytes: 0,
      });
      for (const p of ['a', 'b', 'c'])
        await m.putFile({ path: p, version: 1, blob: blob(1, 100, 30), now: 1 });
      await m.putFile({ path: 'd', version: 1, blob: blob(2, 50, 20), now: 1 });
      await unreferenced(3, 1);
      expect(await m.totals()).toEqual({
        files: 4,
        logicalBytes: 350,
        blobs: 3,
        uniqueLogicalBytes: 150,
        storedBytes: 54,
      });
    });

    it('finds kept totals that drifted from the blob rows, and corrects them', async () => {
      for (const p of ['a', 'b'])
        await m.putFile({ path: p, version: 1, blob: blob(1, 100, 30), now: 1 });
      await m.putFile({ path: 'c', version: 1, blob: blob(2, 50, 20), now: 1 });
      let both = await m.totalsBothWays();
      expect(both.kept).toEqual(both.counted);
      expect(both.counted).toEqual(await m.totals());
      await h.sql(m, 'UPDATE store_totals SET files = files + 5, stored_bytes = stored_bytes - 7');
      both = await m.totalsBothWays();
      expect(both.kept).toEqual({
        ...both.counted,
        files: both.counted.files + 5,
        storedBytes: both.counted.storedBytes - 7,
      });
      await m.resetKeptTotals();
      both = await m.totalsBothWays();
      expect(both.kept).toEqual(both.counted);
      // Kept from the new values on.
      await m.putFile({ path: 'd', version: 1, blob: blob(3, 9, 4), now: 2 });
      expect(await m.keptTotals()).toEqual(await m.totals());
      expect((await m.keptTotals()).files).toBe(4);
    });

    it('compares the two in one snapshot while writes go on', async () => {
      // Every comparison taken amid concurrent changes must agree: the kept
      // figures and the blob rows are read as of one moment. (It bites on
      // PostgreSQL, where statements interleave: under READ COMMITTED it
      // fails; SQLite's one connection runs each comparison whole anyway.)
      const writes = Array.from({ length: 40 }, (_, i) =>
        m.putFile({
          path: `w${i % 10}`,
          version: i + 1,
          blob: blob((i % 4) + 1, 10 + i, 5),
          now: i,
        }),
      );
      const comparisons = Array.from({ length: 10 }, () => m.totalsBothWays());
      await Promise.all(writes);
      for (const { kept, counted } of await Promise.all(comparisons)) expect(kept).toEqual(counted);
      expect(await m.keptTotals()).toEqual(await m.totals());
      // A correction amid writes leaves them right too.
      await h.sql(m, 'UPDATE store_totals SET files = files + 3');
      const more = Array.from({ length: 40 }, (_, i) =>
        m.putFile({
          path: `v${i % 10}`,
          version: i + 1,
          blob: blob((i % 4) + 1, 10 + i, 5),
          now: i,
        }),
      );
      const correction = m.resetKeptTotals();
      await Promise.all([...more, correction]);
      expect(await m.keptTotals()).toEqual(await m.totals());
    });

    it('keeps its totals equal to the added-up store through every kind of change', async () => {
      const same = async (step: string) =>
        expect(await m.keptTotals(), step).toEqual(await m.totals());
      await same('empty');
      for (const p of ['a', 'b', 'c'])
        await m.putFile({ path: p, version: 1, blob: blob(1, 100, 30), now: 1 });
      await m.putFile({ path: 'd', version: 1, blob: blob(2, 50, 20), now: 1 });
      await same('new paths and contents');
      await m.putFile({ path: 'a', version: 2, blob: blob(2, 50, 20), now: 2 });
      await m.putFile({ path: 'b', version: 2, blob: blob(3, 7, 5), now: 2 });
      await same('paths moved to other contents');
      await m.deleteFile({ path: 'c', version: 3, now: 3 });
      await same('the last path of a content deleted');
      await m.deleteUnreferenced([hash(1)], 10);
      await same('the cleaner deleted the unreferenced row');
      await h.sql(m, `UPDATE blobs SET refcount = 9 WHERE hash = '${hash(2)}'`);
      await same('a wrong count');
      await m.recount(hash(2), 2);
      await same('recounted');
      await m.markDamage(hash(3), 'missing');
      await m.markRestored(hash(3), 6);
      await same('restored with another stored size');
      await m.dropBlob(hash(2));
      await same('a lost content given up with its paths');
      expect((await m.keptTotals()).files).toBe(1);
    });
  });
}
