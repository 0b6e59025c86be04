import { fdatasync, readdirSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { FilesystemBlobStore, syncDir } from '../../src/blobstore/filesystem.js';
import { makeTempDir } from '../support/tmp.js';
import { blobStoreContract } from './blobstore.contract.js';

blobStoreContract('filesystem', async () => {
  const dir = await makeTempDir();
  const store = await FilesystemBlobStore.open(dir.path);
  return {
    store,
    leftovers: () => readdir(join(dir.path, '.incoming')),
    leaveUpload: async (key) => {
      await writeFile(
        join(dir.path, '.incoming', `incoming-${process.pid}-${key.replaceAll('/', '_')}`),
        'partial',
      );
    },
    close: dir.remove,
  };
});

/** What a test of the filesystem store's specifics gets: the store, its folder, and the directories fsynced so far. */
interface Fixture {
  store: FilesystemBlobStore;
  root: string;
  /** Directories fsynced, relative to the root ('.' for the root), in order. */
  synced: string[];
}

/**
 * Runs `test` on a store in a fresh folder, removed afterwards. Every
 * directory fsync is recorded, then handed to `onSync` (a real fsync unless
 * given); `syncFile` replaces the store's fdatasync.
 */
async function withStore(
  test: (f: Fixture) => Promise<void>,
  options: {
    onSync?: (name: string, dir: string) => Promise<void>;
    syncFile?: (fd: number) => Promise<void>;
  } = {},
): Promise<void> {
  const dir = await makeTempDir();
  try {
    const synced: string[] = [];
    const onSync = options.onSync ?? ((_name: string, d: string) => syncDir(d));
    const store = await FilesystemBlobStore.open(dir.path, {
      syncDir: async (d) => {
        const name = relative(dir.path, d) || '.';
        synced.push(name);
        await onSync(name, d);
      },
      ...(options.syncFile ? { syncFile: options.syncFile } : {}),
    });
    await test({ store, root: dir.path, synced });
  } finally {
    await dir.remove();
  }
}

/** An fdatasync that fails with EIO while `failing()` says so, and really syncs otherwise. */
function flakyDatasync(failing: () => boolean): (fd: number) => Promise<void> {
  return async (fd) => {
    if (failing()) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    await promisify(fdatasync)(fd);
  };
}

describe('FilesystemBlobStore specifics', () => {
  it("fsyncs each directory a PUT creates in its parent, and the blob's own directory", () =>
    withStore(async ({ store, synced }) => {
      // New "ab" in the root and "cd" in "ab": both parents, then the blob's entry.
      await store.put('ab/cd/x', Readable.from([Buffer.from('1')]));
      expect(synced).toEqual(['ab', '.', 'ab/cd']);
      synced.length = 0;
      // Existing directories: only the blob's entry.
      await store.put('ab/cd/y', Readable.from([Buffer.from('2')]));
      expect(synced).toEqual(['ab/cd']);
      synced.length = 0;
      await store.put('ab/ef/z', Readable.from([Buffer.from('3')]));
      expect(synced).toEqual(['ab', 'ab/ef']);
    }));

  it('a PUT into a shard another PUT is creating waits for its parents to be on disk', async () => {
    const events: string[] = [];
    await withStore(
      async ({ store }) => {
        await Promise.all(
          ['x', 'y'].map(async (name) => {
            await store.put(`ab/cd/${name}`, Readable.from([Buffer.from(name)]));
            events.push(`answered ${name}`);
          }),
        );
        const lastParent = Math.max(events.indexOf('sync ab'), events.indexOf('sync .'));
        expect(lastParent).toBeGreaterThanOrEqual(0);
        for (const name of ['x', 'y'])
          expect(events.indexOf(`answered ${name}`)).toBeGreaterThan(lastParent);
      },
      {
        onSync: async (name) => {
          // Slow parents: a PUT that did not wait for them would answer first.
          if (name !== 'ab/cd') await new Promise((r) => setTimeout(r, 50));
          events.push(`sync ${name}`);
        },
      },
    );
  });

  it('PUTs into one directory at the same moment share its fsyncs, each after its own entry', async () => {
    const events: string[] = [];
    await withStore(
      async ({ store }) => {
        await store.put('ab/cd/first', Readable.from([Buffer.from('0')]));
        events.length = 0;
        const names = Array.from({ length: 12 }, (_, i) => `n${String(i).padStart(2, '0')}`);
        await Promise.all(
          names.map(async (name) => {
            await store.put(`ab/cd/${name}`, Buffer.from(name));
            events.push(`answered ${name}`);
          }),
        );
        const syncs = events.filter((e) => e.startsWith('sync'));
        expect(syncs.length).toBeGreaterThanOrEqual(1);
        // Shared: far fewer fsyncs than PUTs (one running and one queued at a time).
        expect(syncs.length).toBeLessThan(names.length / 2);
        // Every answer comes after an fsync that began once its entry was there.
        for (const name of names) {
          const answered = events.indexOf(`answered ${name}`);
          const covering = events.findIndex((e) => e.startsWith('sync') && e.includes(name));
          expect(covering).toBeGreaterThanOrEqual(0);
          expect(covering).toBeLessThan(answered);
        }
      },
      {
        onSync: async (name, d) => {
          if (name !== 'ab/cd') return;
          // Which blob entries exist when this fsync starts is what it makes
          // durable: read at once, before any other PUT can link.
          const entries = readdirSync(d);
          events.push(`sync [${entries.sort().join(',')}]`);
          await new Promise((r) => setTimeout(r, 30));
        },
      },
    );
  });

  it('a failed flush while a large blob arrives fails its PUT, even if the last fdatasync succeeds', async () => {
    let calls = 0;
    await withStore(
      async ({ store, root }) => {
        const chunk = Buffer.alloc(1024 * 1024, 7);
        const body = Readable.from(Array.from({ length: 24 }, () => chunk));
        await expect(store.put('ab/cd/big', body)).rejects.toMatchObject({
          code: 'BACKEND_UNAVAILABLE',
        });
        expect(calls).toBeGreaterThanOrEqual(2);
        expect(await store.get('ab/cd/big')).toBeNull();
        expect(await readdir(join(root, '.incoming'))).toEqual([]);
        // The same blob stored again once the disk is well: whole.
        await store.put('ab/cd/big', Readable.from(Array.from({ length: 24 }, () => chunk)));
        expect((await readFile(join(root, 'ab', 'cd', 'big'))).length).toBe(24 * 1024 * 1024);
      },
      // Linux reports a writeback error once: the first (background) flush fails, later ones pass.
      { syncFile: flakyDatasync(() => ++calls === 1) },
    );
  });

  it('a small upload whose fdatasync fails stores nothing and leaves no temporary file', async () => {
    let failing = true;
    await withStore(
      async ({ store, root }) => {
        const data = Buffer.from('a small blob, written on the event loop');
        await expect(store.put('ab/cd/small', data)).rejects.toMatchObject({
          code: 'BACKEND_UNAVAILABLE',
        });
        expect(await store.get('ab/cd/small')).toBeNull();
        expect(await readdir(join(root, '.incoming'))).toEqual([]);
        failing = false;
        expect(await store.put('ab/cd/small', data)).toEqual({ created: true, size: data.length });
        expect(await readFile(join(root, 'ab', 'cd', 'small'))).toEqual(data);
      },
      { syncFile: flakyDatasync(() => failing) },
    );
  });

  it('an upload of a blob already there makes its directory entry durable before answering', () =>
    withStore(async ({ store, root, synced }) => {
      // As a process that linked and crashed before its directory fsync leaves it.
      await mkdir(join(root, 'ab', 'cd'), { recursive: true });
      await writeFile(join(root, 'ab', 'cd', 'x'), '1');
      const result = await store.put('ab/cd/x', Buffer.from('1'));
      expect(result).toEqual({ created: false, size: 1 });
      expect(synced.at(-1)).toBe('ab/cd');
    }));

  it('shard directories left by an earlier process are made durable the first time they are used', () =>
    withStore(async ({ store, root, synced }) => {
      await mkdir(join(root, 'ab', 'cd'), { recursive: true });
      await store.put('ab/cd/x', Readable.from([Buffer.from('1')]));
      expect(synced).toEqual(['ab', '.', 'ab/cd']);
    }));

  it('keeps temporary files out of listings and refuses keys that escape the root', () =>
    withStore(async ({ store }) => {
      await store.put('ab/cd/x', Readable.from([Buffer.from('1')]));
      const keys: string[] = [];
      for await (const item of store.list()) keys.push(item.key);
      expect(keys).toEqual(['ab/cd/x']);
      await expect(store.put('../escape', Readable.from([Buffer.from('1')]))).rejects.toThrow(
        /unsafe blob key/,
      );
      await expect(store.get('.incoming/x')).rejects.toThrow(/unsafe blob key/);
    }));

  it('reports a broken store as unavailable, not as absent', () =>
    withStore(async ({ store }) => {
      await store.put('ab/cd/x', Readable.from([Buffer.from('1')]));
      // A folder where a file is expected: reading fails with EISDIR, which is not "absent".
      await store.put('ab/cd/y/z', Readable.from([Buffer.from('1')]));
      await expect(store.get('ab/cd/y')).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    }));
});
