import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { checkBuffer, checkStream, readWhole } from '../../src/dedup/body-readers.js';
import { UploadCheck, type UploadRules } from '../../src/dedup/upload-check.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

function rules(over: Partial<UploadRules> = {}): UploadRules {
  return { encoding: 'identity', hints: {}, verify: true, maxLogicalSize: 100 * MiB, ...over };
}

/** Collects what a reader writes to its sink. */
function collector(): { sink: PassThrough; bytes: () => Buffer } {
  const chunks: Buffer[] = [];
  const sink = new PassThrough();
  sink.on('data', (c: Buffer) => chunks.push(c));
  return { sink, bytes: () => Buffer.concat(chunks) };
}

/** Yields `repeat` copies of `chunk`, counting how many bytes the consumer actually pulled. */
function counted(chunk: Buffer, repeat: number): { stream: Readable; pulled: () => number } {
  let pulled = 0;
  let left = repeat;
  const stream = new Readable({
    read() {
      if (left-- <= 0) return void this.push(null);
      pulled += chunk.length;
      this.push(chunk);
    },
  });
  return { stream, pulled: () => pulled };
}

async function outcome(p: () => Promise<{ id: { sha256: string; logicalSize: number } }>) {
  try {
    const { id } = await p();
    return id;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

/**
 * Every way of reading a body: one buffer (small bodies), a stream into a
 * sink (new content), a stream checked only (content already stored).
 */
const READERS = {
  buffer: (body: Buffer, r: UploadRules) => checkBuffer(body, new UploadCheck(r), 6),
  'stream to a sink': (body: Buffer, r: UploadRules) =>
    checkStream(
      Readable.from([body.subarray(0, 7), body.subarray(7)]),
      new UploadCheck(r),
      collector().sink,
      6,
    ),
  'stream checked only': (body: Buffer, r: UploadRules) =>
    checkStream(Readable.from([body]), new UploadCheck(r), null, 6),
};

const content = Buffer.from('the real content of a file\n'.repeat(40));
const gz = gzipSync(content, { level: 9 });
const text3MiB = Buffer.from('line of a test output\n'.repeat(150_000));
const gz3MiB = gzipSync(text3MiB);
const good = { sha256: sha(content), logicalSize: content.length };
// Incompressible and under SYNC_INFLATE: inflated in one synchronous call when read whole.
const random1536KiB = randomBytes(1536 * 1024);
const gzRandom = gzipSync(random1536KiB);
const randomId = { sha256: sha(random1536KiB), logicalSize: random1536KiB.length };

/** [name, body, rules, expected: the content's identity or an error code] */
const CASES: Array<[string, Buffer, Partial<UploadRules>, string | typeof good]> = [
  ['raw body', content, {}, good],
  ['raw body with true hints', content, { hints: good }, good],
  ['gzip body', gz, { encoding: 'gzip' }, good],
  ['gzip body with true hints', gz, { encoding: 'gzip', hints: good }, good],
  [
    'multi-member gzip',
    Buffer.concat([gzipSync(content.subarray(0, 100)), gzipSync(content.subarray(100))]),
    { encoding: 'gzip' },
    good,
  ],
  [
    'gzip of content larger than one synchronous inflate',
    gz3MiB,
    { encoding: 'gzip', hints: { sha256: sha(text3MiB), logicalSize: text3MiB.length } },
    { sha256: sha(text3MiB), logicalSize: text3MiB.length },
  ],
  [
    'gzip of 3 MiB without hints (a synchronous inflate gives up, the stream measures)',
    gz3MiB,
    { encoding: 'gzip' },
    { sha256: sha(text3MiB), logicalSize: text3MiB.length },
  ],
  ['gzip of 1.5 MiB incompressible', gzRandom, { encoding: 'gzip', hints: randomId }, randomId],
  [
    'gzip of 1.5 MiB declared one byte smaller',
    gzRandom,
    { encoding: 'gzip', hints: { logicalSize: random1536KiB.length - 1 } },
    'SIZE_MISMATCH',
  ],
  [
    'raw, wrong checksum',
    content,
    { hints: { sha256: sha(Buffer.from('x')) } },
    'CHECKSUM_MISMATCH',
  ],
  [
    'gzip, wrong checksum',
    gz,
    { encoding: 'gzip', hints: { sha256: sha(Buffer.from('x')) } },
    'CHECKSUM_MISMATCH',
  ],
  [
    'raw, size one larger',
    content,
    { hints: { logicalSize: content.length + 1 } },
    'SIZE_MISMATCH',
  ],
  [
    'raw, size one smaller',
    content,
    { hints: { logicalSize: content.length - 1 } },
    'SIZE_MISMATCH',
  ],
  [
    // Refused for its size at the first piece past the limit, before the
    // inflater reaches what follows the gzip stream.
    'gzip past the size limit, with trailing data',
    Buffer.concat([gzipSync(text3MiB.subarray(0, 1536 * 1024)), Buffer.from('trailing')]),
    { encoding: 'gzip', maxLogicalSize: MiB },
    'TOO_LARGE',
  ],
  [
    'gzip, size one larger',
    gz,
    { encoding: 'gzip', hints: { logicalSize: content.length + 1 } },
    'SIZE_MISMATCH',
  ],
  [
    'gzip, size one smaller',
    gz,
    { encoding: 'gzip', hints: { logicalSize: content.length - 1 } },
    'SIZE_MISMATCH',
  ],
  [
    'gzip of 3 MiB declared one byte smaller',
    gz3MiB,
    { encoding: 'gzip', hints: { logicalSize: text3MiB.length - 1 } },
    'SIZE_MISMATCH',
  ],
  ['raw past the limit', content, { maxLogicalSize: content.length - 1 }, 'TOO_LARGE'],
  [
    'gzip past the limit',
    gz,
    { encoding: 'gzip', maxLogicalSize: content.length - 1 },
    'TOO_LARGE',
  ],
  [
    'gzip of 3 MiB past the limit',
    gz3MiB,
    { encoding: 'gzip', maxLogicalSize: 3 * MiB - 1 },
    'TOO_LARGE',
  ],
  [
    'not gzip at all',
    Buffer.from('plain text, labelled gzip'),
    { encoding: 'gzip' },
    'INVALID_GZIP',
  ],
  ['truncated gzip', gz.subarray(0, 30), { encoding: 'gzip' }, 'INVALID_GZIP'],
  [
    'gzip with trailing garbage',
    Buffer.concat([gz, Buffer.from('junk')]),
    { encoding: 'gzip' },
    'INVALID_GZIP',
  ],
  [
    'gzip with trailing zeros',
    Buffer.concat([gz, Buffer.alloc(16)]),
    { encoding: 'gzip' },
    'INVALID_GZIP',
  ],
  ['empty body labelled gzip', Buffer.alloc(0), { encoding: 'gzip' }, 'INVALID_GZIP'],
  [
    'trusted hints: gzip taken as it is, not even inflated',
    Buffer.from('not even gzip, but trusted'),
    { encoding: 'gzip', verify: false, hints: good },
    good,
  ],
  [
    'verification off: a raw body is hashed anyway',
    content,
    { verify: false, hints: { sha256: sha(Buffer.from('x')), logicalSize: 3 } },
    good,
  ],
];

describe('every body reader accepts and refuses the same input (one UploadCheck)', () => {
  for (const [reader, read] of Object.entries(READERS)) {
    it.each(CASES)(`${reader}: %s`, async (_name, body, over, expected) => {
      expect(await outcome(() => read(body, rules(over)))).toEqual(expected);
    });
  }
});

describe('UploadCheck refuses from the headers alone', () => {
  it.each([
    [{ hints: { sha256: 'xyz' } }, 'INVALID_HEADER'],
    [{ hints: { logicalSize: 101 } }, 'TOO_LARGE'],
    [{ declaredLength: 101 }, 'TOO_LARGE'],
  ] as const)('%j', (over, code) => {
    expect(() => new UploadCheck(rules({ maxLogicalSize: 100, ...over }))).toThrow(
      expect.objectContaining({ code }),
    );
  });

  it('a gzip body may be longer on the wire than the limit (its content decides)', () => {
    expect(
      () => new UploadCheck(rules({ encoding: 'gzip', maxLogicalSize: 100, declaredLength: 101 })),
    ).not.toThrow();
  });
});

describe('stored bytes', () => {
  it('a raw body is stored as its gzip; a gzip body byte for byte', async () => {
    const raw = randomBytes(200_000);
    const out = collector();
    const r = await checkStream(Readable.from([raw]), new UploadCheck(rules()), out.sink, 6);
    expect(r.storedSize).toBe(out.bytes().length);
    expect(gunzipSync(out.bytes()).equals(raw)).toBe(true);

    const gzOut = collector();
    const g = await checkStream(
      Readable.from([gz.subarray(0, 7), gz.subarray(7)]),
      new UploadCheck(rules({ encoding: 'gzip' })),
      gzOut.sink,
      6,
    );
    expect(gzOut.bytes().equals(gz)).toBe(true);
    expect(g.storedSize).toBe(gz.length);

    const small = await checkBuffer(raw.subarray(0, 20_000), new UploadCheck(rules()), 6);
    expect(gunzipSync(await small.stored()).equals(raw.subarray(0, 20_000))).toBe(true);
    const smallGz = await checkBuffer(gz, new UploadCheck(rules({ encoding: 'gzip' })), 6);
    expect((await smallGz.stored()).equals(gz)).toBe(true);
  });
});

describe('reading stops at the first byte past a limit', () => {
  it('a body that outgrows its declared size', async () => {
    const src = counted(Buffer.alloc(64 * 1024, 1), 1000);
    const check = new UploadCheck(rules({ hints: { logicalSize: 100_000 } }));
    expect(await outcome(() => checkStream(src.stream, check, null, 6))).toBe('SIZE_MISMATCH');
    expect(src.pulled()).toBeLessThan(1 * MiB);
  });

  it('a gzip bomb is cut off instead of inflated to the end', async () => {
    // 100 gzip members of 64 MiB of zeros each: 6.4 GiB inflated from ~6 MB.
    const member = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
    const src = counted(member, 100);
    const check = new UploadCheck(rules({ encoding: 'gzip', maxLogicalSize: 10 * MiB }));
    expect(await outcome(() => checkStream(src.stream, check, collector().sink, 6))).toBe(
      'TOO_LARGE',
    );
    // Only the first member (and what was buffered behind it) was read.
    expect(src.pulled()).toBeLessThan(5 * member.length);
  });

  it('a small gzip bomb read whole costs no more than the limit', async () => {
    // 60 MiB of zeros in about 60 KiB: inflates 1000-fold.
    const bomb = gzipSync(Buffer.alloc(60 * MiB), { level: 9 });
    const before = process.memoryUsage().arrayBuffers;
    const over = rules({ encoding: 'gzip', maxLogicalSize: 1 * MiB });
    expect(await outcome(() => checkBuffer(bomb, new UploadCheck(over), 6))).toBe('TOO_LARGE');
    const lying = rules({ encoding: 'gzip', hints: { logicalSize: 10 } });
    expect(await outcome(() => checkBuffer(bomb, new UploadCheck(lying), 6))).toBe('SIZE_MISMATCH');
    // The inflated bytes were hashed and dropped, never collected.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * MiB);
  });

  it('a raw body past the limit', async () => {
    const src = counted(Buffer.alloc(64 * 1024), 100);
    const check = new UploadCheck(rules({ maxLogicalSize: MiB }));
    expect(await outcome(() => checkStream(src.stream, check, null, 6))).toBe('TOO_LARGE');
    expect(src.pulled()).toBeLessThan(2 * MiB);
  });

  it('a body that fails midway is the client going away', async () => {
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000));
    setTimeout(() => body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), 10);
    expect(
      await outcome(() => checkStream(body, new UploadCheck(rules()), collector().sink, 6)),
    ).toBe('CLIENT_ABORTED');
  });
});

describe('readWhole', () => {
  it('collects a body arriving in pieces', async () => {
    const body = Readable.from([Buffer.from('abc'), Buffer.from('defg')]);
    expect((await readWhole(body, 7)).toString()).toBe('abcdefg');
  });

  it('reads into a given buffer, and never past its end', async () => {
    const into = Buffer.alloc(7);
    const body = Readable.from([Buffer.from('abc'), Buffer.from('defg')]);
    expect(await readWhole(body, 7, undefined, into)).toBe(into);
    expect(into.toString()).toBe('abcdefg');
    // More bytes than announced (not what Node's parser delivers, but never written past the end).
    const short = Buffer.alloc(12);
    const guarded = short.subarray(0, 4);
    const longer = Readable.from([Buffer.from('abc'), Buffer.from('defgh')]);
    await expect(readWhole(longer, 4, undefined, guarded)).rejects.toMatchObject({
      code: 'CLIENT_ABORTED',
    });
    expect(short.subarray(4).equals(Buffer.alloc(8))).toBe(true);
  });

  it('reports a body that fails midway, or was gone already, as the client going away', async () => {
    const code = (p: Promise<unknown>) =>
      p.then(
        () => 'resolved',
        (err: { code?: string }) => err.code,
      );
    const body = new PassThrough();
    body.write(Buffer.alloc(100));
    setTimeout(() => body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), 10);
    expect(await code(readWhole(body, 1000))).toBe('CLIENT_ABORTED');
    const gone = new PassThrough();
    gone.on('error', () => {});
    gone.destroy(new Error('aborted'));
    expect(await code(readWhole(gone, 10))).toBe('CLIENT_ABORTED');
    expect(await code(readWhole(Readable.from([Buffer.from('abc')]), 10))).toBe('CLIENT_ABORTED');
  });
});
