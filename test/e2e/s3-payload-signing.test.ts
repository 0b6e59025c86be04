import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { signsPayload } from '../../src/blobstore/s3.js';
import { readAll } from '../support/bytes.js';
import { faultProxy } from '../support/fault-proxy.js';
import { s3Target } from '../support/s3.js';
import { openTestS3 } from '../support/s3-store.js';

const MiB = 1024 * 1024;
/** SHA-256 of no bytes: what a request without a body signs. */
const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

describe('S3_PAYLOAD_SIGNING', () => {
  it('auto signs upload bodies over http:// only; signed and unsigned are taken as they are', () => {
    expect(signsPayload({ endpoint: 'http://s3.internal:7480', payloadSigning: 'auto' })).toBe(
      true,
    );
    expect(signsPayload({ endpoint: 'https://s3.example.com', payloadSigning: 'auto' })).toBe(
      false,
    );
    expect(signsPayload({ endpoint: 'https://s3.example.com', payloadSigning: 'signed' })).toBe(
      true,
    );
    expect(signsPayload({ endpoint: 'http://s3.internal', payloadSigning: 'unsigned' })).toBe(
      false,
    );
  });

  // Both S3 servers the project is tested on must take what is sent on the
  // wire either way: one PutObject and a three-part multipart upload.
  describe.each(['s3', 'swift'] as const)('on %s', (name) => {
    it.each(['signed', 'unsigned'] as const)(
      '%s: uploads are stored and read back whole',
      async (payloadSigning) => {
        const target = s3Target(name);
        const proxy = await faultProxy(target.endpoint);
        const store = await openTestS3({ endpoint: proxy.url, payloadSigning }, target);
        try {
          const before = proxy.payloadHashes().length;
          const small = randomBytes(64 * 1024);
          const large = randomBytes(11 * MiB);
          await store.put('signing/small', Readable.from([small]), { size: small.length });
          await store.put('signing/large', Readable.from([large]));
          const sent = proxy.payloadHashes().slice(before);
          const unsigned = sent.filter((h) => h === 'UNSIGNED-PAYLOAD').length;
          // Hashes of bodies that are not empty (requests without one sign the empty string's).
          const hashed = sent.filter((h) => /^[0-9a-f]{64}$/.test(h) && h !== EMPTY_SHA256).length;
          // The PutObject and three UploadParts (5 MiB parts), and the
          // CompleteMultipartUpload's list of parts, which is always signed.
          // At least: a retried request is sent again.
          if (payloadSigning === 'signed') {
            expect(unsigned).toBe(0);
            expect(hashed).toBeGreaterThanOrEqual(5);
          } else {
            expect(unsigned).toBeGreaterThanOrEqual(4);
            expect(hashed).toBeLessThan(unsigned);
          }
          for (const [key, bytes] of [
            ['signing/small', small],
            ['signing/large', large],
          ] as const) {
            const got = await store.get(key);
            expect(got).not.toBeNull();
            expect((await readAll((got as { body: Readable | Buffer }).body)).equals(bytes)).toBe(
              true,
            );
          }
          await store.deleteMany(['signing/small', 'signing/large']);
        } finally {
          await store.close();
          await proxy.close();
        }
      },
      60_000,
    );
  });
});
