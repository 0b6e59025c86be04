import { createHash, randomBytes } from 'node:crypto';
import { type Gunzip, gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { gunzipEach, gunzipWhole, inflatesInPlace } from '../../src/dedup/sync-gunzip.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const KiB = 1024;
const MiB = 1024 * KiB;

/** What gunzipSync makes of a body: the reference every way of inflating must match. */
function reference(
  body: Buffer,
): { consumed: number; size: number; sha: string } | { error: string } {
  try {
    const { buffer, engine } = gunzipSync(body, { info: true }) as unknown as {
      buffer: Buffer;
      engine: Gunzip;
    };
    return { consumed: engine.bytesWritten, size: buffer.length, sha: sha(buffer) };
  } catch (err) {
    return { error: `${(err as NodeJS.ErrnoException).code}: ${(err as Error).message}` };
  }
}

type Way = typeof gunzipEach;

function run(way: Way, body: Buffer, max = 64 * MiB) {
  const hash = createHash('sha256');
  let pieces = 0;
  try {
    const result = way(body, max, (piece) => {
      pieces++;
      hash.update(piece);
    });
    if (result === null) return { tooLarge: true as const, pieces };
    return { consumed: result.consumed, size: result.size, sha: hash.digest('hex'), pieces };
  } catch (err) {
    return { error: `${(err as NodeJS.ErrnoException).code}: ${(err as Error).message}` };
  }
}

const text = Buffer.from('expected output of test 17: 1 2 3 4 5 6 7 8 9 10\n'.repeat(40_000));
const random = randomBytes(MiB);
const gzRandom = gzipSync(random);
const gzText = gzipSync(text);

/** Bodies well formed and not, each as a client or a damaged object could send it. */
const bodies: [string, Buffer][] = [
  ['1 MiB incompressible', gzRandom],
  ['2 MB of text in a few KiB', gzText],
  ['empty content', gzipSync(Buffer.alloc(0))],
  ['one byte', gzipSync(Buffer.from('x'))],
  ['two members', Buffer.concat([gzipSync(Buffer.from('first ')), gzRandom])],
  [
    'two members, the first ending on a piece boundary',
    Buffer.concat([gzipSync(Buffer.alloc(64 * KiB, 'a')), gzipSync(Buffer.alloc(64 * KiB, 'b'))]),
  ],
  ['trailing zero padding', Buffer.concat([gzRandom, Buffer.alloc(100)])],
  ['trailing data', Buffer.concat([gzText, Buffer.from('\0\0not gzip')])],
  ['trailing garbage', Buffer.concat([gzText, Buffer.from('not gzip')])],
  ['cut off in the header', gzRandom.subarray(0, 5)],
  ['cut off in the middle', gzRandom.subarray(0, gzRandom.length >> 1)],
  ['cut off in the trailer', gzRandom.subarray(0, gzRandom.length - 3)],
  ['not gzip', Buffer.from('plain text, not gzip at all')],
  ['empty body', Buffer.alloc(0)],
];
{
  const flipped = Buffer.from(gzText);
  flipped.writeUInt8(flipped.readUInt8(flipped.length >> 1) ^ 0xff, flipped.length >> 1);
  bodies.push(['a byte flipped in the deflate data', flipped]);
  const badCrc = Buffer.from(gzRandom);
  badCrc.writeUInt8(badCrc.readUInt8(badCrc.length - 8) ^ 0x01, badCrc.length - 8);
  bodies.push(['a wrong CRC-32', badCrc]);
  const badSize = Buffer.from(gzRandom);
  badSize.writeUInt32LE(12345, badSize.length - 4);
  bodies.push(['a wrong size in the trailer', badSize]);
}

describe.each([
  ['gunzipEach', gunzipEach],
  ['gunzipWhole (the fallback)', gunzipWhole],
])('%s', (_name, way) => {
  it.each(bodies)('answers as gunzipSync does: %s', (_label, body) => {
    const expected = reference(body);
    const got = run(way, body);
    if ('error' in expected) expect(got).toEqual(expected);
    else expect(got).toMatchObject(expected);
  });

  it('stops past the bound, and takes content of exactly the bound', () => {
    let seen = 0;
    const stopped = way(gzRandom, 100 * KiB, (piece) => {
      seen += piece.length;
    });
    expect(stopped).toBeNull();
    expect(seen).toBeLessThanOrEqual(100 * KiB);
    expect(run(way, gzRandom, MiB - 1)).toMatchObject({ tooLarge: true });
    expect(run(way, gzRandom, MiB)).toMatchObject({ size: MiB, sha: sha(random) });
    expect(run(way, gzipSync(Buffer.from('x')), 0)).toMatchObject({ tooLarge: true });
    expect(run(way, gzipSync(Buffer.alloc(0)), 0)).toMatchObject({ size: 0, consumed: 20 });
  });

  it('stops when the sink throws, and the next body still comes out right', () => {
    let seen = 0;
    expect(() =>
      way(gzRandom, 64 * MiB, (piece) => {
        seen += piece.length;
        if (seen > 100 * KiB) throw new Error('too much for this check');
      }),
    ).toThrow('too much for this check');
    expect(run(way, gzText)).toMatchObject(reference(gzText));
  });

  it('comes out right after an error and after a stop at the bound', () => {
    expect(run(way, gzRandom.subarray(0, 1000))).toHaveProperty('error');
    expect(run(way, gzText)).toMatchObject(reference(gzText));
    expect(run(way, gzText, 1000)).toMatchObject({ tooLarge: true });
    expect(run(way, gzRandom)).toMatchObject({
      size: MiB,
      sha: sha(random),
      consumed: gzRandom.length,
    });
  });
});

describe('gunzipEach', () => {
  it('can be called again from inside a sink', () => {
    const outer = createHash('sha256');
    let inner = '';
    const result = gunzipEach(gzRandom, 64 * MiB, (piece) => {
      if (inner === '') {
        const again = run(gunzipEach, gzText);
        inner = 'sha' in again && again.sha !== undefined ? again.sha : 'failed';
      }
      outer.update(piece);
    });
    expect(result).toMatchObject({ size: MiB, consumed: gzRandom.length });
    expect(outer.digest('hex')).toBe(sha(random));
    expect(inner).toBe(sha(text));
  });

  it('inflates in place on the Node versions this project supports', () => {
    // If a Node release changes zlib's internals, uploads still work (through
    // gunzipWhole) but lose the saving: this is where that shows.
    expect(inflatesInPlace).toBe(true);
  });

  it('hands out pieces of one reused buffer, never the content whole', () => {
    const memory = new Set<ArrayBufferLike>();
    let largest = 0;
    for (const body of [gzRandom, gzText]) {
      gunzipEach(body, 64 * MiB, (piece) => {
        memory.add(piece.buffer);
        largest = Math.max(largest, piece.length);
      });
    }
    expect(memory.size).toBe(1);
    expect(largest).toBeLessThanOrEqual(64 * KiB);
  });
});
