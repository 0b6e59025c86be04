import { createHash, randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import {
  type IngestSpec,
  ingest,
  measureBuffer,
  readWhole,
  SMALL_BODY,
} from '../../src/dedup/ingest.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

function spec(over: Partial<IngestSpec> = {}): IngestSpec {
  return {
    encoding: 'identity',
    hints: {},
    verify: true,
    maxLogicalSize: 100 * MiB,
    gzipLevel: 6,
    ...over,
  };
}

/** Collects what ingest writes to its sink. */
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

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
  return 'resolved';
}

/** Bodies labelled gzip that are not (exactly) gzip: both ingest paths must refuse them. */
const NOT_GZIP: Array<[string, Buffer]> = [
  ['not gzip at all', Buffer.from('plain text, labelled gzip')],
  ['truncated', gzipSync(Buffer.from('abc'.repeat(1000))).subarray(0, 30)],
  ['trailing garbage', Buffer.concat([gzipSync(Buffer.from('x')), Buffer.from('junk')])],
  ['trailing zeros', Buffer.concat([gzipSync(Buffer.from('x')), Buffer.alloc(16)])],
  ['empty', Buffer.alloc(0)],
];

describe('ingest', () => {
  it('measures a raw body and stores its gzip', async () => {
    const content = randomBytes(200_000);
    const out = collector();
    const m = await ingest(
      Readable.from([content]),
      spec({ hints: { sha256: sha(content), logicalSize: content.length } }),
      out.sink,
    );
    expect(m.sha256).toBe(sha(content));
    expect(m.logicalSize).toBe(content.length);
    expect(m.storedSize).toBe(out.bytes().length);
    expect(gunzipSync(out.bytes()).equals(content)).toBe(true);
  });

  it('stores a gzip body byte for byte', async () => {
    const content = Buffer.from('text '.repeat(10_000));
    const gz = gzipSync(content, { level: 9 });
    const out = collector();
    const m = await ingest(
      Readable.from([gz.subarray(0, 7), gz.subarray(7)]),
      spec({ encoding: 'gzip' }),
      out.sink,
    );
    expect(out.bytes().equals(gz)).toBe(true);
    expect(m).toEqual({ sha256: sha(content), logicalSize: content.length, storedSize: gz.length });
  });

  it('accepts a multi-member gzip body', async () => {
    const a = Buffer.from('first part ');
    const b = Buffer.from('second part');
    const m = await ingest(
      Readable.from([Buffer.concat([gzipSync(a), gzipSync(b)])]),
      spec({ encoding: 'gzip' }),
      null,
    );
    expect(m.sha256).toBe(sha(Buffer.concat([a, b])));
  });

  it('rejects a lying checksum or size, for raw and gzip bodies', async () => {
    const content = Buffer.from('the real content');
    for (const encoding of ['identity', 'gzip'] as const) {
      const body = () => Readable.from([encoding === 'gzip' ? gzipSync(content) : content]);
      expect(
        await code(
          ingest(body(), spec({ encoding, hints: { sha256: sha(Buffer.from('other')) } }), null),
        ),
      ).toBe('CHECKSUM_MISMATCH');
      expect(
        await code(
          ingest(body(), spec({ encoding, hints: { logicalSize: content.length + 1 } }), null),
        ),
      ).toBe('SIZE_MISMATCH');
      expect(
        await code(
          ingest(body(), spec({ encoding, hints: { logicalSize: content.length - 1 } }), null),
        ),
      ).toBe('SIZE_MISMATCH');
    }
  });

  it('stops reading as soon as the content outgrows its declared size', async () => {
    const src = counted(Buffer.alloc(64 * 1024, 1), 1000);
    expect(await code(ingest(src.stream, spec({ hints: { logicalSize: 100_000 } }), null))).toBe(
      'SIZE_MISMATCH',
    );
    expect(src.pulled()).toBeLessThan(1 * MiB);
  });

  it.each(NOT_GZIP)('rejects a gzip body that is %s', async (_name, body) => {
    expect(
      await code(ingest(Readable.from([body]), spec({ encoding: 'gzip' }), collector().sink)),
    ).toBe('INVALID_GZIP');
    expect(await code(ingest(Readable.from([body]), spec({ encoding: 'gzip' }), null))).toBe(
      'INVALID_GZIP',
    );
  });

  it('cuts off a gzip bomb instead of inflating it to the end', async () => {
    // 100 gzip members of 64 MiB of zeros each: 6.4 GiB inflated from ~6 MB.
    const member = gzipSync(Buffer.alloc(64 * MiB), { level: 9 });
    const src = counted(member, 100);
    expect(
      await code(
        ingest(src.stream, spec({ encoding: 'gzip', maxLogicalSize: 10 * MiB }), collector().sink),
      ),
    ).toBe('TOO_LARGE');
    // Only the first member (and what was buffered behind it) was read.
    expect(src.pulled()).toBeLessThan(5 * member.length);
  });

  it('refuses a raw body past the limit', async () => {
    const src = counted(Buffer.alloc(64 * 1024), 100);
    expect(await code(ingest(src.stream, spec({ maxLogicalSize: MiB }), null))).toBe('TOO_LARGE');
    expect(src.pulled()).toBeLessThan(2 * MiB);
  });

  it('with trusted hints stores gzip without inflating it', async () => {
    const bytes = Buffer.from('not even gzip, but trusted');
    const out = collector();
    const hints = { sha256: 'a'.repeat(64), logicalSize: 5 };
    const m = await ingest(
      Readable.from([bytes]),
      spec({ encoding: 'gzip', verify: false, hints }),
      out.sink,
    );
    expect(m).toEqual({ sha256: hints.sha256, logicalSize: 5, storedSize: bytes.length });
    expect(out.bytes().equals(bytes)).toBe(true);
  });

  it('reports a body that fails midway as the client going away', async () => {
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000));
    setTimeout(() => body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), 10);
    expect(await code(ingest(body, spec(), collector().sink))).toBe('CLIENT_ABORTED');
  });
});

/**
 * The in-memory path for small bodies must accept and refuse exactly what the
 * streaming path does, with the same error codes.
 */
describe('measureBuffer (small bodies read whole)', () => {
  const gzipOf = (b: Buffer) => gzipSync(b, { level: 9 });

  it('measures a raw body and compresses it only when asked for the bytes', async () => {
    const content = randomBytes(20_000);
    const m = await measureBuffer(
      content,
      spec({ hints: { sha256: sha(content), logicalSize: content.length } }),
    );
    expect(m.sha256).toBe(sha(content));
    expect(m.logicalSize).toBe(content.length);
    expect(gunzipSync(await m.stored()).equals(content)).toBe(true);
  });

  it('keeps a gzip body byte for byte, multi-member included', async () => {
    const a = Buffer.from('first part ');
    const b = Buffer.from('second part');
    const gz = Buffer.concat([gzipOf(a), gzipOf(b)]);
    const m = await measureBuffer(gz, spec({ encoding: 'gzip' }));
    expect(m.sha256).toBe(sha(Buffer.concat([a, b])));
    expect(m.logicalSize).toBe(a.length + b.length);
    expect((await m.stored()).equals(gz)).toBe(true);
  });

  it('rejects a lying checksum or size, for raw and gzip bodies, like ingest()', async () => {
    const content = Buffer.from('the real content');
    for (const encoding of ['identity', 'gzip'] as const) {
      const body = encoding === 'gzip' ? gzipOf(content) : content;
      const cases: Array<[IngestSpec['hints'], string]> = [
        [{ sha256: sha(Buffer.from('other')) }, 'CHECKSUM_MISMATCH'],
        [{ logicalSize: content.length + 1 }, 'SIZE_MISMATCH'],
        [{ logicalSize: content.length - 1 }, 'SIZE_MISMATCH'],
      ];
      for (const [hints, expected] of cases) {
        expect(await code(measureBuffer(body, spec({ encoding, hints })))).toBe(expected);
        expect(await code(ingest(Readable.from([body]), spec({ encoding, hints }), null))).toBe(
          expected,
        );
      }
    }
  });

  it.each(NOT_GZIP)('rejects a gzip body that is %s', async (_name, body) => {
    expect(await code(measureBuffer(body, spec({ encoding: 'gzip' })))).toBe('INVALID_GZIP');
  });

  it('cuts off a small gzip bomb at the limit', async () => {
    // 60 MiB of zeros in about 60 KiB: fits a small body, inflates 1000-fold.
    const bomb = gzipSync(Buffer.alloc(60 * MiB), { level: 9 });
    expect(bomb.length).toBeLessThanOrEqual(SMALL_BODY);
    const before = process.memoryUsage().arrayBuffers;
    expect(
      await code(measureBuffer(bomb, spec({ encoding: 'gzip', maxLogicalSize: 1 * MiB }))),
    ).toBe('TOO_LARGE');
    expect(
      await code(measureBuffer(bomb, spec({ encoding: 'gzip', hints: { logicalSize: 10 } }))),
    ).toBe('SIZE_MISMATCH');
    // The inflated bytes were hashed and dropped, never collected.
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * MiB);
  });

  it('measures content larger than one synchronous inflate (and checks it) all the same', async () => {
    // Text compresses well: a few KiB of gzip carry 3 MiB of content.
    const content = Buffer.from('line of a test output\n'.repeat(150_000));
    const gz = gzipOf(content);
    expect(gz.length).toBeLessThanOrEqual(SMALL_BODY);
    for (const hints of [{}, { sha256: sha(content), logicalSize: content.length }]) {
      const m = await measureBuffer(gz, spec({ encoding: 'gzip', hints }));
      expect({ sha256: m.sha256, logicalSize: m.logicalSize }).toEqual({
        sha256: sha(content),
        logicalSize: content.length,
      });
    }
    const lying = spec({ encoding: 'gzip', hints: { logicalSize: content.length - 1 } });
    expect(await code(measureBuffer(gz, lying))).toBe('SIZE_MISMATCH');
    const over = spec({ encoding: 'gzip', maxLogicalSize: content.length - 1 });
    expect(await code(measureBuffer(gz, over))).toBe('TOO_LARGE');
    const lyingHash = spec({ encoding: 'gzip', hints: { sha256: sha(Buffer.from('x')) } });
    expect(await code(measureBuffer(gz, lyingHash))).toBe('CHECKSUM_MISMATCH');
  });

  it('refuses a raw body past the limit', async () => {
    expect(await code(measureBuffer(Buffer.alloc(2000), spec({ maxLogicalSize: 1000 })))).toBe(
      'TOO_LARGE',
    );
  });

  it('with trusted hints keeps gzip bytes without inflating them', async () => {
    const bytes = Buffer.from('not even gzip, but trusted');
    const hints = { sha256: 'a'.repeat(64), logicalSize: 5 };
    const m = await measureBuffer(bytes, spec({ encoding: 'gzip', verify: false, hints }));
    expect({ sha256: m.sha256, logicalSize: m.logicalSize }).toEqual(hints);
    expect((await m.stored()).equals(bytes)).toBe(true);
  });
});

describe('readWhole', () => {
  it('collects a body arriving in pieces', async () => {
    const body = Readable.from([Buffer.from('abc'), Buffer.from('defg')]);
    expect((await readWhole(body, 7)).toString()).toBe('abcdefg');
  });

  it('reports a body that fails midway, or was gone already, as the client going away', async () => {
    const body = new PassThrough();
    body.write(Buffer.alloc(100));
    setTimeout(() => body.destroy(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })), 10);
    expect(await code(readWhole(body, 1000))).toBe('CLIENT_ABORTED');
    const gone = new PassThrough();
    gone.on('error', () => {});
    gone.destroy(new Error('aborted'));
    expect(await code(readWhole(gone, 10))).toBe('CLIENT_ABORTED');
  });

  it('refuses a body shorter than announced', async () => {
    expect(await code(readWhole(Readable.from([Buffer.from('abc')]), 10))).toBe('CLIENT_ABORTED');
  });
});
