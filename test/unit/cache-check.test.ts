import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ContentCheck, checkBytes } from '../../src/blobcache/verify.js';

/** How many times checkBytes() tried the synchronous inflate (the event-loop path). */
const sync = vi.hoisted(() => ({ tries: 0 }));
vi.mock('../../src/dedup/sync-gunzip.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/dedup/sync-gunzip.js')>();
  return {
    ...real,
    gunzipEach: (...args: Parameters<typeof real.gunzipEach>) => {
      sync.tries++;
      return real.gunzipEach(...args);
    },
  };
});

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
  /** Checks finished on the thread pool (ContentCheck). */
  const pooled = vi.spyOn(ContentCheck.prototype, 'finish');
  beforeEach(() => {
    sync.tries = 0;
    pooled.mockClear();
  });

  // The first two on the event loop; 3 MiB of text (a few KiB of gzip) on the thread pool.
  const contents: { name: string; content: Buffer; way: 'event loop' | 'thread pool' }[] = [
    { name: '1 KiB of random bytes', content: randomBytes(1024), way: 'event loop' },
    { name: '1.5 MiB of random bytes', content: randomBytes(1.5 * MiB), way: 'event loop' },
    { name: '3 MiB of text in a small object', content: text(3 * MiB), way: 'thread pool' },
  ];

  it.each(contents)(
    '$name: right and wrong hash (checked on the $way), trailing data',
    async ({ content, way }) => {
      const gz = gzipSync(content);
      const onLoop = way === 'event loop' ? 1 : 0;
      expect(await checkBytes(gz, hashOf(content))).toBeNull();
      expect(await checkBytes(gz, hashOf(randomBytes(8)))).toBe('content does not hash to its key');
      expect([sync.tries, pooled.mock.calls.length]).toEqual([2 * onLoop, 2 * (1 - onLoop)]);
      expect(await checkBytes(Buffer.concat([gz, Buffer.from([0, 0])]), hashOf(content))).toBe(
        'trailing data after the gzip stream',
      );
    },
  );

  it.each(contents)('$name cut off: refused', async ({ content }) => {
    // Its last four bytes are deflate data now: either way may be taken, the answer is the same.
    const gz = gzipSync(content);
    expect(await checkBytes(gz.subarray(0, gz.length - 10), hashOf(content))).toMatch(
      /^not a valid gzip stream/,
    );
  });

  it('a trailer that lies about the size is refused whichever way it sends the check', async () => {
    const large = text(3 * MiB);
    // Said small: tried on the event loop, given up past 2 MiB, then refused on the thread pool.
    const saidSmall = withTrailerSize(gzipSync(large), 100);
    expect(await checkBytes(saidSmall, hashOf(large))).toMatch(/^not a valid gzip stream/);
    expect([sync.tries, pooled.mock.calls.length]).toEqual([1, 1]);
    // Said large: sent to the thread pool, refused there.
    const small = randomBytes(1024);
    const saidLarge = withTrailerSize(gzipSync(small), 3 * MiB);
    expect(await checkBytes(saidLarge, hashOf(small))).toMatch(/^not a valid gzip stream/);
    expect([sync.tries, pooled.mock.calls.length]).toEqual([1, 2]);
    // Said small, and small but not that small: refused on the event loop.
    const saidSmaller = withTrailerSize(gzipSync(small), 1);
    expect(await checkBytes(saidSmaller, hashOf(small))).toMatch(/^not a valid gzip stream/);
    expect([sync.tries, pooled.mock.calls.length]).toEqual([2, 2]);
  });

  it('two gzip members, whose trailer gives only the last one’s size: right either way', async () => {
    const last = Buffer.from('end\n');
    // The trailer says 4 bytes, so both are tried on the event loop. The 1 MiB one is
    // checked there; the 3 MiB one is given up past 2 MiB and checked on the thread pool.
    for (const [first, onPool] of [
      [randomBytes(MiB), 0],
      [text(3 * MiB), 2],
    ] as const) {
      const joined = Buffer.concat([gzipSync(first), gzipSync(last)]);
      expect(joined.readUInt32LE(joined.length - 4)).toBe(last.length);
      expect(await checkBytes(joined, hashOf(Buffer.concat([first, last])))).toBeNull();
      expect(await checkBytes(joined, hashOf(first))).toBe('content does not hash to its key');
      expect([sync.tries, pooled.mock.calls.length]).toEqual([2, onPool]);
      sync.tries = 0;
      pooled.mockClear();
    }
  });
});
