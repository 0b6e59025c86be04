import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isAppError } from '../../src/errors.js';
import type { OldFile, OldStore } from '../../src/migration/source.js';

const V = 1_234_567_890;

export interface OldStoreHarness {
  store: OldStore;
  /** Puts a file into the old store behind the implementation's back. */
  seed(path: string, content: Buffer, version: number): Promise<void>;
  /** Makes the old store fail (down, unreachable); undone by heal(). */
  breakIt(): Promise<void>;
  heal(): Promise<void>;
  /** Whether it can list (a V1 HTTP server cannot). */
  lists: boolean;
  close(): Promise<void>;
}

async function read(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The content of a fetched file, whatever the encoding it came in. */
async function contentOf(file: OldFile): Promise<Buffer> {
  const body = await read(file.body);
  return file.encoding === 'gzip' ? gunzipSync(body) : body;
}

async function collect(it: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const x of it) out.push(x);
  return out.sort();
}

/**
 * What live migration and `migrate` rely on from any old store (V2 server,
 * V1 server, V1 folder): absence is null, a failure is a thrown
 * BACKEND_UNAVAILABLE and never an absence, versions round-trip, writes
 * follow the protocol's version rule.
 */
export function oldStoreContract(name: string, open: () => Promise<OldStoreHarness>): void {
  describe(`OldStore contract: ${name}`, () => {
    let h: OldStoreHarness;
    beforeAll(async () => {
      h = await open();
    });
    afterAll(async () => {
      await h?.close();
    });

    it('head and fetch: the version, the sizes, the content; null when absent', async () => {
      const content = Buffer.from('contract content '.repeat(100));
      await h.seed('c/file', content, V);
      const head = await h.store.head('c/file');
      expect(head?.version).toBe(V);
      expect(head?.logicalSize).toBe(content.length);
      const file = await h.store.fetch('c/file');
      expect(file?.version).toBe(V);
      expect(await contentOf(file as OldFile)).toEqual(content);
      expect(await h.store.head('c/absent')).toBeNull();
      expect(await h.store.fetch('c/absent')).toBeNull();
    });

    it('versions before 1970 and non-ASCII paths round-trip', async () => {
      await h.seed('c/żółw/日本', Buffer.from('old'), -86_400 * 400);
      expect((await h.store.head('c/żółw/日本'))?.version).toBe(-86_400 * 400);
    });

    it('lists every file under a folder (real names), nothing for a folder it does not have', async () => {
      if (!h.lists) {
        expect(h.store.list).toBeUndefined();
        return;
      }
      const list = h.store.list?.bind(h.store) as NonNullable<OldStore['list']>;
      await h.seed('l/a', Buffer.from('1'), V);
      await h.seed('l/über/b', Buffer.from('2'), V);
      expect(await collect(list('l'))).toEqual(['a', 'über/b']);
      expect(await collect(list('nothing-here'))).toEqual([]);
    });

    it('put stores a newer version and keeps a newer one; delete removes what is not newer', async () => {
      const put = h.store.put?.bind(h.store);
      const remove = h.store.delete?.bind(h.store);
      if (!put || !remove) throw new Error(`${name} takes no writes`);
      const content = Buffer.from('written through');
      const gzip = gzipSync(content);
      const upload = (version: number) => ({
        version,
        body: gzip,
        length: gzip.length,
        logicalSize: content.length,
        sha256: createHash('sha256').update(content).digest('hex'),
      });
      await put('w/file', upload(V));
      expect(await contentOf((await h.store.fetch('w/file')) as OldFile)).toEqual(content);
      expect((await h.store.head('w/file'))?.version).toBe(V);
      await h.seed('w/newer', Buffer.from('newer'), V + 10);
      await put('w/newer', upload(V));
      expect((await h.store.head('w/newer'))?.version).toBe(V + 10);

      expect(await remove('w/newer', V)).toBe('done');
      expect((await h.store.head('w/newer'))?.version).toBe(V + 10);
      expect(await remove('w/file', V)).toBe('done');
      expect(await h.store.head('w/file')).toBeNull();
      expect(await remove('w/file', V)).toBe('absent');
    });

    it('a failing old store throws BACKEND_UNAVAILABLE, never answers "absent"', async () => {
      await h.breakIt();
      try {
        for (const call of [() => h.store.head('c/file'), () => h.store.fetch('c/absent')]) {
          const err = await call().then(
            () => null,
            (e: unknown) => e,
          );
          expect(isAppError(err, 'BACKEND_UNAVAILABLE'), String(err)).toBe(true);
        }
      } finally {
        await h.heal();
      }
    });
  });
}
