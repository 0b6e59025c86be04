import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { S3BlobStore } from '../../src/blobstore/s3.js';
import { blobKey } from '../../src/dedup/keys.js';
import { digestOf, http, pyClient } from '../support/http.js';
import { checkInvariants } from '../support/invariants.js';
import {
  filesystemProfile,
  s3Profile,
  startTestServer,
  type TestServer,
} from '../support/server.js';

const V = 1234567890;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * Issue #11, durability gap (b): a blob object lost behind the server's back
 * is recorded when a GET finds it gone, and the next PUT of that content
 * stores it again, so every path of it reads again.
 */
describe.each([
  ['filesystem', filesystemProfile],
  ['s3', s3Profile],
] as const)('restoring lost content (%s)', (name, profile) => {
  let srv: TestServer;
  beforeAll(async () => {
    srv = await startTestServer(profile);
  });
  afterAll(async () => {
    await srv?.close();
  });
  const key = (content: Buffer) => blobKey(sha(content), srv.config.S3_KEY_SHARDING_DEPTH);

  it.each([
    ['small', 2_000],
    ['streamed', 300_000],
  ])(
    'an object deleted behind the server: GET is 500, the next PUT of the content restores it (%s)',
    async (_n, size) => {
      const content = randomBytes(size);
      expect((await pyClient.put(srv.url, `/lost/${size}/a`, content, V)).status).toBe(200);
      await srv.server.backends.blobs.delete(key(content));

      const broken = await http(`${srv.url}/files/lost/${size}/a`);
      expect(broken.status).toBe(500);
      expect(broken.headers['x-exception']).toMatch(/missing from the blob store/);
      expect((await srv.server.backends.meta.getBlob(sha(content)))?.damage).toBe('missing');

      // The same content again, under another path (Python-client shape: the hash is named).
      expect((await pyClient.put(srv.url, `/lost/${size}/b`, content, V)).status).toBe(200);
      for (const path of ['a', 'b']) {
        const got = await pyClient.get(srv.url, `/lost/${size}/${path}`);
        expect(got.status).toBe(200);
        expect(digestOf(got.content)).toBe(digestOf(content));
      }
      expect((await srv.server.backends.meta.getBlob(sha(content)))?.damage).toBeNull();
      expect(
        await checkInvariants(
          srv.server.backends.meta,
          srv.server.backends.blobs,
          srv.config.S3_KEY_SHARDING_DEPTH,
        ),
      ).toEqual([]);
    },
  );

  it('a blob recorded as corrupt is replaced by the next PUT of its content', async () => {
    const content = randomBytes(150_000);
    expect((await pyClient.put(srv.url, '/corrupt/a', content, V)).status).toBe(200);
    // Other bytes under the key, and the mark fsck --deep would leave.
    const garbage = randomBytes(1000);
    await srv.server.backends.blobs.put(key(content), Readable.from([garbage]), {
      size: garbage.length,
      beforeCommit: async () => 'replace',
    });
    await srv.server.backends.meta.markDamage(sha(content), 'corrupt');

    expect((await pyClient.put(srv.url, '/corrupt/b', content, V, false)).status).toBe(200);
    for (const path of ['a', 'b']) {
      expect(digestOf((await pyClient.get(srv.url, `/corrupt/${path}`)).content)).toBe(
        digestOf(content),
      );
    }
    const row = await srv.server.backends.meta.getBlob(sha(content));
    expect(row?.damage).toBeNull();
    expect(row?.storedSize).toBe((await srv.server.backends.blobs.stat(key(content)))?.size);
  });

  it('a PUT of stored, undamaged content costs no request to the blob store beyond reading the body', async () => {
    const content = randomBytes(100_000);
    expect((await pyClient.put(srv.url, '/hit/a', content, V)).status).toBe(200);
    if (name !== 's3') return;
    const counts = (srv.server.backends.blobs as S3BlobStore).requestCounts;
    const before = JSON.stringify([...counts].sort());
    expect((await pyClient.put(srv.url, '/hit/b', content, V)).status).toBe(200);
    expect(JSON.stringify([...counts].sort())).toBe(before);
  });
});
