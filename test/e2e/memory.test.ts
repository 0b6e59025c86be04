import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { pyVersionQuery } from '../support/http.js';
import { type ServerProcess, startServerProcess } from '../support/process.js';
import { emptyBucket, s3Target } from '../support/s3.js';
import { s3Env } from '../support/server.js';
import { makeTempDir } from '../support/tmp.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

/**
 * Peak RSS bounds, in 10^6 bytes: SPEC §9 asks for 150 MB with a 1 GiB file
 * and 300 MB with 64 concurrent 16 MiB uploads. The server runs with the
 * flags of the CLI's shebang (2 MB semi-spaces, --expose-gc for the GC pacer),
 * as users run it. Measured peaks are in docs/memory.md.
 */
const limits = { oneGiB: 150_000_000, concurrent: 300_000_000 };

/** The chunks, streamed: the test process never holds a whole file either. */
function streamOf(chunks: () => Iterable<Buffer>): Readable {
  return Readable.from(chunks(), { objectMode: false });
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

function* repeat(block: Buffer, count: number, head?: Buffer): Iterable<Buffer> {
  if (head) yield head;
  for (let i = 0; i < count; i++) yield block;
}

function digest(chunks: Iterable<Buffer>): string {
  const hash = createHash('sha256');
  for (const c of chunks) hash.update(c);
  return hash.digest('hex');
}

/**
 * SPEC §9 memory targets, measured as the peak resident set size (VmHWM) of
 * the server running as its own process, started like an operator starts it.
 *
 * 64 concurrent uploads are measured on the filesystem store and radosgw
 * only. Through Swift they hold the same part buffers as through radosgw
 * (249.3 against 248.4 MB when last measured, docs/memory.md); its one
 * difference, a HeadObject under the commit lock before each create, is
 * not worth the 20 s of the suite's time budget that the case took there.
 */
describe.each([
  ['filesystem', () => ({}), true],
  ['s3 (Ceph radosgw)', () => s3Env(), true],
  ['s3 (OpenStack Swift s3api)', () => s3Env(s3Target('swift')), false],
])('server memory, %s store', (name, backendEnv, concurrentToo) => {
  let dir: { path: string; remove(): Promise<void> };
  let server: ServerProcess;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await makeTempDir();
    env = backendEnv();
    server = await startServerProcess({
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
      GZIP_LEVEL: '1',
      ...env,
    });
  }, 60_000);
  afterEach(async () => {
    // Give the test cluster its RAM back (it keeps objects in memory).
    if (env?.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME, env.S3_ACCESS_KEY);
  });
  afterAll(async () => {
    await server?.stop();
    await dir?.remove();
  });

  it(`a 1 GiB file in (gzip and raw uploads) and out (both encodings) peaks under ${limits.oneGiB / 1e6} MB`, async () => {
    const peak = await oneGiBInAndOut(server, name);
    expect(peak).toBeLessThan(limits.oneGiB);
  }, 300_000);

  if (!concurrentToo) return;
  it(`64 concurrent 16 MiB uploads peak under ${limits.concurrent / 1e6} MB`, async () => {
    const block = randomBytes(MiB);
    const member = gzipSync(block, { level: 1 });
    const uploads = Array.from({ length: 64 }, (_, i) => {
      // Distinct contents (so each one is really uploaded) without 1 GiB of test data in memory.
      const head = Buffer.from(`upload ${i} of 64 ${randomBytes(8).toString('hex')}\n`);
      const headGz = gzipSync(head);
      const sha256 = digest(repeat(block, 16, head));
      return request(`${server.url}/files/concurrent/${i}?${pyVersionQuery(1)}`, {
        method: 'PUT',
        headers: {
          'content-encoding': 'gzip',
          'sha256-checksum': sha256,
          'logical-size': String(head.length + 16 * MiB),
          'content-length': String(headGz.length + 16 * member.length),
        },
        body: streamOf(() => repeat(member, 16, headGz)),
      }).then(async (res) => {
        await res.body.dump();
        return res.statusCode;
      });
    });
    expect(await Promise.all(uploads)).toEqual(uploads.map(() => 200));
    const peak = server.peakRss();
    console.log(
      `[memory] ${name}: peak RSS with 64 concurrent 16 MiB uploads = ${(peak / 1e6).toFixed(1)} MB`,
    );
    expect(peak).toBeLessThan(limits.concurrent);
  }, 300_000);
});

/**
 * PUTs a 1 GiB file gzip (Python-client shape) and raw, GETs it back in both
 * encodings, checking every byte; returns the server's peak RSS (VmHWM).
 */
async function oneGiBInAndOut(server: ServerProcess, name: string): Promise<number> {
  // RSS sampled every 20 ms per phase, to show where the peak is.
  let phase = 'start';
  const phases: Record<string, number> = {};
  const sampler = setInterval(() => {
    phases[phase] = Math.max(phases[phase] ?? 0, Math.round(server.currentRss() / 1e5) / 10);
  }, 20);
  const count = GiB / MiB;

  // Python-client shape: gzip body with SHA256-Checksum and Logical-Size, here
  // a multi-member gzip of 1,024 incompressible 1 MiB blocks: ~1 GiB stored.
  phase = 'gzip PUT';
  const block = randomBytes(MiB);
  const member = gzipSync(block, { level: 1 });
  const sha256 = digest(repeat(block, count));
  const put = await request(`${server.url}/files/big/python.bin?${pyVersionQuery(1)}`, {
    method: 'PUT',
    headers: {
      'content-encoding': 'gzip',
      'sha256-checksum': sha256,
      'logical-size': String(GiB),
      'content-length': String(member.length * count),
    },
    body: streamOf(() => repeat(member, count)),
  });
  expect(put.statusCode).toBe(200);
  await put.body.dump();

  // Raw upload without hints: hashed while spilling to a temporary file, then compressed by the server.
  phase = 'raw PUT';
  const rawBlock = Buffer.concat([randomBytes(64 * 1024), Buffer.alloc(MiB - 64 * 1024)]);
  const raw = await request(`${server.url}/files/big/raw.bin?${pyVersionQuery(1)}`, {
    method: 'PUT',
    body: streamOf(() => repeat(rawBlock, count)),
  });
  expect(raw.statusCode).toBe(200);
  await raw.body.dump();

  phase = 'gzip GET';
  const gz = await request(`${server.url}/files/big/python.bin`);
  expect(gz.headers['content-encoding']).toBe('gzip');
  expect((await drainHashing(gz.body)).bytes).toBe(member.length * count);

  phase = 'identity GET';
  const plain = await request(`${server.url}/files/big/python.bin`, {
    headers: { 'accept-encoding': 'identity' },
  });
  expect(await drainHashing(plain.body)).toEqual({ bytes: GiB, sha256 });
  const rawBack = await request(`${server.url}/files/big/raw.bin`, {
    headers: { 'accept-encoding': 'identity' },
  });
  expect(await drainHashing(rawBack.body)).toEqual({
    bytes: GiB,
    sha256: digest(repeat(rawBlock, count)),
  });

  clearInterval(sampler);
  const peak = server.peakRss();
  console.log(
    `[memory] ${name}: peak RSS with 1 GiB in and out = ${(peak / 1e6).toFixed(1)} MB; sampled by phase (MB): ${JSON.stringify(phases)}`,
  );
  return peak;
}

/**
 * The same 1 GiB check with the server started as `node dist/cli/main.js
 * server`, without the shebang's flags (a Dockerfile CMD, a systemd unit):
 * the process applies the settings itself (src/runtime/node-flags.ts).
 */
describe('server memory, started by plain node (no shebang flags)', () => {
  let dir: { path: string; remove(): Promise<void> };
  let server: ServerProcess;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = await makeTempDir();
    env = s3Env();
    server = await startServerProcess(
      {
        STORAGE_PATH: join(dir.path, 'blobs'),
        SQLITE_PATH: join(dir.path, 'kv.db'),
        TEMP_DIR: join(dir.path, 'tmp'),
        GZIP_LEVEL: '1',
        ...env,
      },
      ['server'],
      [],
    );
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    if (env?.BUCKET_NAME) await emptyBucket(env.BUCKET_NAME, env.S3_ACCESS_KEY);
    await dir?.remove();
  });

  it(`through S3: a 1 GiB file in and out peaks under ${limits.oneGiB / 1e6} MB, and nothing warns about missing flags`, async () => {
    const peak = await oneGiBInAndOut(server, 's3 (Ceph radosgw), plain node');
    expect(peak).toBeLessThan(limits.oneGiB);
    expect(server.output()).not.toMatch(/no gc\(\) to pace/);
  }, 300_000);
});
