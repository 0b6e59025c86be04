import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blobstore/port.js';
import { readAll } from '../support/bytes.js';

/** What a contract suite needs from an implementation's test file. */
export interface BlobStoreHarness {
  store: BlobStore;
  /** Names of files/objects the store left outside its keys (temporary uploads): must be empty after every operation. */
  leftovers(): Promise<string[]>;
  /** Leaves an upload of `key` unfinished, as a process killed mid-upload does. */
  leaveUpload(key: string): Promise<void>;
  close(): Promise<void>;
}

/** A stream of `size` pseudo-random bytes produced in chunks, never held whole. */
function generated(size: number, seed = 1): { stream: Readable; sha256: () => string } {
  const hash = createHash('sha256');
  let left = size;
  let x = seed;
  const stream = new Readable({
    read() {
      if (left === 0) return void this.push(null);
      const n = Math.min(left, 64 * 1024);
      const chunk = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) {
        x = (x * 1103515245 + 12345) >>> 0;
        chunk[i] = x >>> 24;
      }
      left -= n;
      hash.update(chunk);
      this.push(chunk);
    },
  });
  return { stream, sha256: () => hash.digest('hex') };
}

async function mustGet(store: BlobStore, key: string) {
  const reader = await store.get(key);
  if (!reader) throw new Error(`expected ${key} to exist`);
  return reader;
}

/**
 * A per-key lock for `beforeCommit`, as the dedup core's `commit:<hash>`
 * lock: held from beforeCommit until put() returns. A store whose create is
 * not atomic by itself (S3 servers without conditional writes) relies on it.
 */
function commitLock() {
  let tail = Promise.resolve();
  return {
    /** Runs put() with the lock taken in its beforeCommit and released when it returns. */
    async around<T>(put: (beforeCommit: () => Promise<void>) => Promise<T>): Promise<T> {
      let release = () => {};
      try {
        return await put(async () => {
          const previous = tail;
          tail = new Promise<void>((resolve) => {
            release = resolve;
          });
          await previous;
        });
      } finally {
        release();
      }
    },
  };
}

let keyCounter = 0;
const uniqueKey = () =>
  `ab/cd/${Date.now().toString(16)}${(keyCounter++).toString(16).padStart(8, '0')}`;

/** The behaviour every BlobStore (filesystem, S3) must have. */
export function blobStoreContract(name: string, open: () => Promise<BlobStoreHarness>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let h: BlobStoreHarness;
    beforeAll(async () => {
      h = await open();
    });
    afterAll(async () => {
      await h?.close();
    });

    it('stores and returns the exact bytes with their size', async () => {
      const key = uniqueKey();
      const data = randomBytes(10_000);
      const put = await h.store.put(key, Readable.from([data]), { size: data.length });
      expect(put).toEqual({ created: true, size: data.length });
      const got = await mustGet(h.store, key);
      expect(got.size).toBe(data.length);
      expect(await readAll(got.body)).toEqual(data);
      expect((await h.store.stat(key))?.size).toBe(data.length);
    });

    it.each([
      ['small', 3_000],
      ['larger than one read', 300_000],
    ])('stores a %s object given as one Buffer', async (_name, size) => {
      const key = uniqueKey();
      const data = randomBytes(size);
      expect(await h.store.put(key, data, { size })).toEqual({ created: true, size });
      expect(await readAll((await mustGet(h.store, key)).body)).toEqual(data);
      // An existing key is kept as it is for Buffer bodies too.
      const other = randomBytes(size);
      expect(await h.store.put(key, other, { size })).toEqual({ created: false, size });
      expect(await readAll((await mustGet(h.store, key)).body)).toEqual(data);
      expect(await h.leftovers()).toEqual([]);
    });

    it('stores an empty object', async () => {
      const key = uniqueKey();
      expect(await h.store.put(key, Readable.from([]), { size: 0 })).toEqual({
        created: true,
        size: 0,
      });
      const got = await mustGet(h.store, key);
      expect(got.size).toBe(0);
      expect((await readAll(got.body)).length).toBe(0);
    });

    it('answers null for an absent key, from get and stat', async () => {
      expect(await h.store.get(uniqueKey())).toBeNull();
      expect(await h.store.stat(uniqueKey())).toBeNull();
    });

    it('never overwrites an existing key', async () => {
      const key = uniqueKey();
      const first = Buffer.from('first version of the bytes');
      await h.store.put(key, Readable.from([first]), { size: first.length });
      const second = Buffer.from('other');
      const again = await h.store.put(key, Readable.from([second]), { size: second.length });
      expect(again).toEqual({ created: false, size: first.length });
      expect(await readAll((await mustGet(h.store, key)).body)).toEqual(first);
      expect(await h.leftovers()).toEqual([]);
    });

    it('never overwrites an existing key with an object of several parts either', async () => {
      const key = uniqueKey();
      const first = Buffer.from('first version of the bytes');
      await h.store.put(key, Readable.from([first]), { size: first.length });
      const large = generated(11 * 1024 * 1024, 3);
      expect(await h.store.put(key, large.stream)).toEqual({ created: false, size: first.length });
      expect(await readAll((await mustGet(h.store, key)).body)).toEqual(first);
      expect(await h.leftovers()).toEqual([]);
    });

    it('creates a key exactly once under concurrent puts whose commits are serialized', async () => {
      const key = uniqueKey();
      const lock = commitLock();
      const bodies = Array.from({ length: 8 }, (_, i) => Buffer.alloc(1000 + i, i));
      const results = await Promise.all(
        bodies.map((b) =>
          lock.around((beforeCommit) =>
            h.store.put(key, Readable.from([b]), { size: b.length, beforeCommit }),
          ),
        ),
      );
      const created = results.filter((r) => r.created);
      expect(created).toHaveLength(1);
      const stored = await readAll((await mustGet(h.store, key)).body);
      expect(bodies.some((b) => b.equals(stored))).toBe(true);
      for (const r of results) expect(r.size).toBe(stored.length);
      expect(await h.leftovers()).toEqual([]);
    });

    it('streams a large object without a size hint', async () => {
      const key = uniqueKey();
      const size = 24 * 1024 * 1024 + 123;
      const src = generated(size, 7);
      expect(await h.store.put(key, src.stream)).toEqual({ created: true, size });
      const got = await mustGet(h.store, key);
      const hash = createHash('sha256');
      let n = 0;
      expect(Buffer.isBuffer(got.body)).toBe(false);
      for await (const c of got.body as Readable) {
        hash.update(c as Buffer);
        n += (c as Buffer).length;
      }
      expect(n).toBe(size);
      expect(hash.digest('hex')).toBe(src.sha256());
    });

    it('runs beforeCommit after the last byte and stores nothing when it throws', async () => {
      const key = uniqueKey();
      let sawAllBytes = false;
      const data = randomBytes(50_000);
      const src = Readable.from([data.subarray(0, 20_000), data.subarray(20_000)]);
      src.on('end', () => {
        sawAllBytes = true;
      });
      await expect(
        h.store.put(key, src, {
          beforeCommit: async () => {
            expect(sawAllBytes).toBe(true);
            throw new Error('checksum says no');
          },
        }),
      ).rejects.toThrow('checksum says no');
      expect(await h.store.stat(key)).toBeNull();
      expect(await h.leftovers()).toEqual([]);
    });

    it.each([
      ['small', 3_000],
      ['larger than one read', 300_000],
    ])('stores nothing when beforeCommit throws on a %s Buffer', async (_name, size) => {
      const key = uniqueKey();
      await expect(
        h.store.put(key, randomBytes(size), {
          size,
          beforeCommit: async () => {
            throw new Error('checksum says no');
          },
        }),
      ).rejects.toThrow('checksum says no');
      expect(await h.store.stat(key)).toBeNull();
      expect(await h.leftovers()).toEqual([]);
    });

    it('stores nothing when the body fails midway', async () => {
      const key = uniqueKey();
      const body = new Readable({ read() {} });
      body.push(randomBytes(100_000));
      setTimeout(() => body.destroy(new Error('client went away')), 20);
      await expect(h.store.put(key, body)).rejects.toThrow();
      expect(await h.store.stat(key)).toBeNull();
      expect(await h.leftovers()).toEqual([]);
    });

    it('stores nothing when aborted', async () => {
      const key = uniqueKey();
      const body = new Readable({ read() {} });
      body.push(randomBytes(10_000));
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 20);
      await expect(h.store.put(key, body, { signal: controller.signal })).rejects.toThrow();
      expect(await h.store.stat(key)).toBeNull();
      expect(await h.leftovers()).toEqual([]);
    });

    it('deletes, and deleting an absent key is fine', async () => {
      const key = uniqueKey();
      await h.store.put(key, Readable.from([Buffer.from('x')]), { size: 1 });
      await h.store.delete(key);
      expect(await h.store.stat(key)).toBeNull();
      await expect(h.store.delete(key)).resolves.toBeUndefined();
    });

    it('deletes many keys at once, absent ones included', async () => {
      const keys = Array.from({ length: 5 }, () => uniqueKey());
      for (const key of keys) await h.store.put(key, Readable.from([Buffer.from(key)]), {});
      const kept = uniqueKey();
      await h.store.put(kept, Readable.from([Buffer.from('kept')]), {});
      await h.store.deleteMany([...keys, uniqueKey()]);
      for (const key of keys) expect(await h.store.stat(key)).toBeNull();
      expect(await h.store.stat(kept)).not.toBeNull();
      await expect(h.store.deleteMany([])).resolves.toBeUndefined();
    });

    it('lists keys in ascending bytewise order, whatever order they were made in', async () => {
      const base = `order${Date.now().toString(16)}${keyCounter++}`;
      const names = ['b/2', 'a-z', 'a/1', 'b/10', 'a/0/x', 'A', 'b/1'];
      for (const name of names) {
        await h.store.put(`${base}/${name}`, Readable.from([Buffer.from(name)]), {});
      }
      const listed: string[] = [];
      for await (const item of h.store.list({ prefix: `${base}/` })) listed.push(item.key);
      const bytewise = names
        .map((n) => `${base}/${n}`)
        .sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      expect(listed).toEqual(bytewise);
    });

    it('replaces an object only when asked to (restoring a damaged blob)', async () => {
      const key = uniqueKey();
      await h.store.put(key, Readable.from([Buffer.from('damaged bytes')]), {});
      const restored = Buffer.from('the right bytes, restored');
      expect(
        await h.store.put(key, Readable.from([restored]), {
          size: restored.length,
          beforeCommit: async () => 'replace',
        }),
      ).toEqual({ created: true, size: restored.length });
      expect(await readAll((await mustGet(h.store, key)).body)).toEqual(restored);
      // Several parts, too.
      const large = generated(11 * 1024 * 1024, 5);
      expect(await h.store.put(key, large.stream, { beforeCommit: async () => 'replace' })).toEqual(
        {
          created: true,
          size: 11 * 1024 * 1024,
        },
      );
      expect(
        createHash('sha256')
          .update(await readAll((await mustGet(h.store, key)).body))
          .digest('hex'),
      ).toBe(large.sha256());
      expect(await h.leftovers()).toEqual([]);
    });

    it('removes unfinished uploads that are old enough, and only its own', async () => {
      const mine = uniqueKey();
      const other = `other/${uniqueKey()}`;
      await h.leaveUpload(mine);
      await h.leaveUpload(other);
      expect(await h.leftovers()).toHaveLength(2);
      // Nothing is old enough yet.
      expect(await h.store.removeStaleUploads(new Date(Date.now() - 60_000), () => true)).toBe(0);
      const later = new Date(Date.now() + 60_000);
      const removed = await h.store.removeStaleUploads(later, (key) => key === mine);
      const left = await h.leftovers();
      // The filesystem store's partial files have no key: their age alone decides.
      expect(removed + left.length).toBe(2);
      expect(removed).toBeGreaterThanOrEqual(1);
      await h.store.removeStaleUploads(later, () => true);
      expect(await h.leftovers()).toEqual([]);
    });

    it('lists keys under a prefix with sizes', async () => {
      const base = `list${Date.now().toString(16)}${keyCounter++}`;
      const keys = [`${base}/aa/k1`, `${base}/aa/k2`, `${base}/bb/k3`];
      for (const [i, key] of keys.entries()) {
        await h.store.put(key, Readable.from([Buffer.alloc(i + 1)]), { size: i + 1 });
      }
      const listed: { key: string; size: number }[] = [];
      for await (const item of h.store.list({ prefix: `${base}/` }))
        listed.push({ key: item.key, size: item.size });
      listed.sort((a, b) => a.key.localeCompare(b.key));
      expect(listed).toEqual(keys.map((key, i) => ({ key, size: i + 1 })));
      const under: string[] = [];
      for await (const item of h.store.list({ prefix: `${base}/aa/` })) under.push(item.key);
      expect(under.sort()).toEqual(keys.slice(0, 2));
    });

    it('answers its health check', async () => {
      await expect(h.store.check()).resolves.toBeUndefined();
    });
  });
}
