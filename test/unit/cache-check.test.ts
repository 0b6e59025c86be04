import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { checkBytes } from '../../src/blobcache/verify.js';

const hashOf = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/** Text that deflates far better than 2:1, so a small object holds much content. */
function text(size: number): Buffer {
  const line = Buffer.from('1 2 3 4 5 6 7 8 9 10 expected output of test 17\n');
  const out = Buffer.alloc(size);
  for (let at = 0; at < size; at += line.length) line.copy(out, at);
  return out;
}

/** The same gzip stream with its trailer's size field (ISIZE) set to `size`. */
function withTrailerSize(gz: Buffer, size: number): Buffer {
  const out = Buffer.from(gz);
  out.writeUInt32LE(size, out.length - 4);
  return out;
}

/**
 * checkBytes() is how a cache fill held whole is checked: content up to
 * 2 MiB is inflated on the event loop, more on the thread pool, and the gzip
 * trailer's size field picks the way before inflating. Whichever way, and
 * whatever the trailer says, the answer must be the same.
 */
describe('checkBytes', () => {
  // 1 KiB and 1.5 MiB are checked on the event loop; 3 MiB of text (about 20 KiB of gzip) is not.
  const contents = {
    '1 KiB of random bytes': randomBytes(1024),
    '1.5 MiB of random bytes': randomBytes(1.5 * MiB),
    '3 MiB of text in a small object': text(3 * MiB),
  };

  it.each(Object.entries(contents))('%s: right, wrong hash, trailing data', async (_, content) => {
    const gz = gzipSync(content);
    expect(await checkBytes(gz, hashOf(content))).toBeNull();
    expect(await checkBytes(gz, hashOf(randomBytes(8)))).toBe('content does not hash to its key');
    expect(await checkBytes(Buffer.concat([gz, Buffer.from([0, 0])]), hashOf(content))).toBe(
      'trailing data after the gzip stream',
    );
    expect(await checkBytes(gz.subarray(0, gz.length - 10), hashOf(content))).toMatch(
      /^not a valid gzip stream/,
    );
  });

  it('a trailer that lies about the size is refused whichever way it sends the check', async () => {
    const large = text(3 * MiB);
    // Said small: tried on the event loop, given up past 2 MiB, then refused on the thread pool.
    const saidSmall = withTrailerSize(gzipSync(large), 100);
    expect(await checkBytes(saidSmall, hashOf(large))).toMatch(/^not a valid gzip stream/);
    // Said large: sent to the thread pool, refused there.
    const small = randomBytes(1024);
    const saidLarge = withTrailerSize(gzipSync(small), 3 * MiB);
    expect(await checkBytes(saidLarge, hashOf(small))).toMatch(/^not a valid gzip stream/);
  });

  it('two gzip members: the trailer gives only the last one’s size, and the answer is still right', async () => {
    const first = text(3 * MiB);
    const last = Buffer.from('end\n');
    const joined = Buffer.concat([gzipSync(first), gzipSync(last)]);
    expect(joined.readUInt32LE(joined.length - 4)).toBe(last.length);
    const content = Buffer.concat([first, last]);
    expect(await checkBytes(joined, hashOf(content))).toBeNull();
    expect(await checkBytes(joined, hashOf(first))).toBe('content does not hash to its key');
  });
});
