import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { FilesystemBlobStore } from '../../src/blobstore/filesystem.js';
import { makeTempDir } from '../support/tmp.js';
import { blobStoreContract } from './blobstore.contract.js';

blobStoreContract('filesystem', async () => {
  const dir = await makeTempDir();
  const store = await FilesystemBlobStore.open(dir.path);
  return {
    store,
    leftovers: () => readdir(join(dir.path, '.incoming')),
    close: dir.remove,
  };
});

describe('FilesystemBlobStore specifics', () => {
  it('keeps temporary files out of listings and refuses keys that escape the root', async () => {
    const dir = await makeTempDir();
    try {
      const store = await FilesystemBlobStore.open(dir.path);
      await store.put('ab/cd/x', Readable.from([Buffer.from('1')]));
      const keys: string[] = [];
      for await (const item of store.list()) keys.push(item.key);
      expect(keys).toEqual(['ab/cd/x']);
      await expect(store.put('../escape', Readable.from([Buffer.from('1')]))).rejects.toThrow(
        /unsafe blob key/,
      );
      await expect(store.get('.incoming/x')).rejects.toThrow(/unsafe blob key/);
    } finally {
      await dir.remove();
    }
  });

  it('reports a broken store as unavailable, not as absent', async () => {
    const dir = await makeTempDir();
    try {
      const store = await FilesystemBlobStore.open(dir.path);
      await store.put('ab/cd/x', Readable.from([Buffer.from('1')]));
      // A folder where a file is expected: reading fails with EISDIR, which is not "absent".
      await store.put('ab/cd/y/z', Readable.from([Buffer.from('1')]));
      await expect(store.get('ab/cd/y')).rejects.toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    } finally {
      await dir.remove();
    }
  });
});
