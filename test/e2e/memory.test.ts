import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pyVersionQuery } from '../support/http.js';
import { type ServerProcess, startServerProcess } from '../support/process.js';
import { makeTempDir } from '../support/tmp.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const LIMIT = 150_000_000; // "150 MB" in SPEC §9, read strictly

/** `count` copies of `block`, streamed: the test process never holds the whole file either. */
function repeated(block: Buffer, count: number): Readable {
  let left = count;
  return new Readable({
    read() {
      this.push(left-- > 0 ? block : null);
    },
  });
}

async function drainHashing(
  body: AsyncIterable<Buffer>,
): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { bytes, sha256: hash.digest('hex') };
}

function digestOfRepeated(block: Buffer, count: number): string {
  const hash = createHash('sha256');
  for (let i = 0; i < count; i++) hash.update(block);
  return hash.digest('hex');
}

/**
 * SPEC §9: a 1 GiB file in and out of the server keeps its peak RSS (VmHWM)
 * under 150 MB. The server runs as its own process so its memory is its own.
 */
describe('memory with a 1 GiB file (filesystem store)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let server: ServerProcess;
  beforeAll(async () => {
    dir = await makeTempDir();
    server = await startServerProcess({
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
      GZIP_LEVEL: '1',
    });
  });
  afterAll(async () => {
    await server?.stop();
    await dir?.remove();
  });

  it('stays under 150 MB peak RSS through gzip and raw uploads and both kinds of download', async () => {
    const count = GiB / MiB;
    // Python-client shape: gzip body with SHA256-Checksum and Logical-Size.
    // A multi-member gzip of 1,024 incompressible 1 MiB blocks: ~1 GiB stored.
    const block = randomBytes(MiB);
    const member = gzipSync(block, { level: 1 });
    const sha256 = digestOfRepeated(block, count);
    const put = await request(`${server.url}/files/big/python.bin?${pyVersionQuery(1)}`, {
      method: 'PUT',
      headers: {
        'content-encoding': 'gzip',
        'sha256-checksum': sha256,
        'logical-size': String(GiB),
        'content-length': String(member.length * count),
      },
      body: repeated(member, count),
    });
    expect(put.statusCode).toBe(200);
    await put.body.dump();

    // Raw upload without hints: hashed while spilling to a temporary file, compressed by the server.
    const rawBlock = Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(MiB - 64 * 1024)]);
    const raw = await request(`${server.url}/files/big/raw.bin?${pyVersionQuery(1)}`, {
      method: 'PUT',
      body: repeated(rawBlock, count),
    });
    expect(raw.statusCode).toBe(200);
    await raw.body.dump();

    const gz = await request(`${server.url}/files/big/python.bin`);
    expect(gz.headers['content-encoding']).toBe('gzip');
    const served = await drainHashing(gz.body);
    expect(served.bytes).toBe(member.length * count);

    const plain = await request(`${server.url}/files/big/python.bin`, {
      headers: { 'accept-encoding': 'identity' },
    });
    expect(await drainHashing(plain.body)).toEqual({ bytes: GiB, sha256 });

    const rawBack = await request(`${server.url}/files/big/raw.bin`, {
      headers: { 'accept-encoding': 'identity' },
    });
    expect(await drainHashing(rawBack.body)).toEqual({
      bytes: GiB,
      sha256: digestOfRepeated(rawBlock, count),
    });

    const peak = server.peakRss();
    console.log(`server peak RSS (VmHWM) after 1 GiB in and out: ${(peak / MiB).toFixed(1)} MiB`);
    expect(peak).toBeLessThan(LIMIT);
  }, 300_000);
});
