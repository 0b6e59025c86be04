import { createHash, randomBytes } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatVersion } from '../../src/protocol/versions.js';
import { digestOf, http, metricValue, pyVersionQuery } from '../support/http.js';
import { checkInvariants, dumpMetadata } from '../support/invariants.js';
import { RawConnection } from '../support/raw-connection.js';
import { type BackendProfile, startTestServer, type TestServer } from '../support/server.js';
import { eventually, listObjects } from '../support/state.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const MiB = 1024 * 1024;

/** Runs `tasks` with at most `limit` in flight. */
async function pool<T>(tasks: (() => Promise<T>)[], limit: number): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < tasks.length) {
        const i = next++;
        results[i] = await (tasks[i] as () => Promise<T>)();
      }
    }),
  );
  return results;
}

function shuffle<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j] as T, out[i] as T];
  }
  return out;
}

type Shape = 'gzip+hints' | 'raw+hash' | 'raw' | 'gzip';

/** A PUT in one of the shapes that take different paths through the core. */
function put(srv: TestServer, path: string, content: Buffer, version: number, shape: Shape) {
  const headers: Record<string, string> = {};
  let body = content;
  if (shape.startsWith('gzip')) {
    body = gzipSync(content, { level: 1 });
    headers['content-encoding'] = 'gzip';
  }
  if (shape.includes('hash') || shape.includes('hints')) headers['sha256-checksum'] = sha(content);
  if (shape.includes('hints')) headers['logical-size'] = String(content.length);
  return http(`${srv.url}/files/${path}?${pyVersionQuery(version)}`, {
    method: 'PUT',
    headers,
    body,
  });
}

const SHAPES: Shape[] = ['gzip+hints', 'raw+hash', 'raw', 'gzip'];

export function concurrencySuite(profile: BackendProfile): void {
  describe(`concurrency over ${profile.name}`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      // A small spill threshold so unhinted uploads go through temporary files too.
      srv = await startTestServer(profile, { SPILL_THRESHOLD: '4096' });
    });
    afterAll(async () => {
      await srv?.close();
    });

    const invariantsHold = async () => {
      const { meta, blobs } = srv.server.backends;
      expect(await checkInvariants(meta, blobs, srv.config.S3_KEY_SHARDING_DEPTH)).toEqual([]);
    };

    it('many concurrent PUTs of one path end with the highest version, whatever the arrival order', async () => {
      for (const seed of [1, 2, 3]) {
        const path = `one-path/${seed}`;
        const versions = shuffle(
          Array.from({ length: 60 }, (_, i) => 1_000_000 + i * 7),
          seed,
        );
        const contentOf = (v: number) => Buffer.from(`version ${v} `.repeat(200 + (v % 50)));
        const answers = await Promise.all(
          versions.map((v, i) =>
            put(srv, path, contentOf(v), v, SHAPES[i % SHAPES.length] as Shape),
          ),
        );
        const highest = Math.max(...versions);
        for (const [i, res] of answers.entries()) {
          expect(res.status).toBe(200);
          // Each answer reports a version at least as new as its own request's.
          expect(Date.parse(res.headers['last-modified'] ?? '') / 1000).toBeGreaterThanOrEqual(
            versions[i] as number,
          );
        }
        const got = await http(`${srv.url}/files/${path}`);
        expect(got.headers['last-modified']).toBe(formatVersion(highest));
        expect(digestOf(gunzipSync(got.body))).toBe(digestOf(contentOf(highest)));
      }
      await invariantsHold();
    });

    it('an upload that finds the memory for whole bodies taken streams instead; all are stored', async () => {
      // Default SPILL_THRESHOLD: bodies up to 2 MiB are read whole, 16 at
      // once. Sixteen slow clients hold that memory; the next upload streams.
      const medium = await startTestServer(profile);
      const slow: RawConnection[] = [];
      try {
        const contents = Array.from({ length: 17 }, () => randomBytes(1536 * 1024));
        const bodies = contents.map((c) => gzipSync(c, { level: 1 }));
        const head = (i: number) => ({
          host: 'localhost',
          'content-length': String(bodies[i]?.length),
          'content-encoding': 'gzip',
          'sha256-checksum': sha(contents[i] as Buffer),
          'logical-size': String(contents[i]?.length),
        });
        for (let i = 0; i < 16; i++) {
          const conn = await RawConnection.open(medium.url);
          slow.push(conn);
          const path = `/files/slow/${i}?${pyVersionQuery(1)}`;
          await conn.send('PUT', path, head(i), (bodies[i] as Buffer).subarray(0, 100_000));
        }
        const memory = () => metricValue(medium.url, 's3dedup_upload_body_memory_bytes');
        await eventually(async () => expect(await memory()).toBe(32 * 1024 * 1024));
        const fast = await put(medium, 'fast', contents[16] as Buffer, 1, 'gzip+hints');
        expect(fast.status).toBe(200);
        const bodiesRead = (read: string) =>
          metricValue(medium.url, 's3dedup_upload_bodies_total', `{read="${read}"}`);
        expect([await bodiesRead('whole'), await bodiesRead('streamed')]).toEqual([16, 1]);
        // A body of unknown hash finds no memory either: it spills from its
        // first byte, so with TEMP_DIR made unusable it fails (503)...
        const tempDir = medium.config.TEMP_DIR;
        await rm(tempDir, { recursive: true, force: true });
        await writeFile(tempDir, 'not a folder');
        const unhinted = randomBytes(MiB);
        expect((await put(medium, 'unhinted', unhinted, 1, 'raw')).status).toBe(503);
        for (const [i, conn] of slow.entries()) {
          await conn.sendRaw((bodies[i] as Buffer).subarray(100_000));
          expect((await conn.read()).status).toBe(200);
        }
        expect(await memory()).toBe(0);
        // ...while with the memory free again it is held in memory, never on
        // disk: sent chunked (no Content-Length), it takes the spill path.
        const chunked = await http(`${medium.url}/files/unhinted?${pyVersionQuery(1)}`, {
          method: 'PUT',
          body: Readable.from([unhinted.subarray(0, MiB / 2), unhinted.subarray(MiB / 2)]),
        });
        expect(chunked.status).toBe(200);
        expect(await memory()).toBe(0);
        await rm(tempDir, { force: true });
        for (const [i, c] of contents.entries()) {
          const got = await http(`${medium.url}/files/${i < 16 ? `slow/${i}` : 'fast'}`);
          expect(digestOf(gunzipSync(got.body))).toBe(digestOf(c));
        }
        const { meta, blobs: store } = medium.server.backends;
        expect(await checkInvariants(meta, store, medium.config.S3_KEY_SHARDING_DEPTH)).toEqual([]);
      } finally {
        for (const conn of slow) conn.close();
        await medium.close();
      }
    });

    it('bad medium bodies read whole are refused as streamed ones are, and give their memory back', async () => {
      const medium = await startTestServer(profile);
      try {
        const content = randomBytes(1536 * 1024);
        const gz = gzipSync(content, { level: 1 });
        const send = (headers: Record<string, string>, body: Buffer) =>
          http(`${medium.url}/files/bad-medium?${pyVersionQuery(1)}`, {
            method: 'PUT',
            headers: { 'content-encoding': 'gzip', ...headers },
            body,
          });
        const cases: Array<[Record<string, string>, Buffer, number, string]> = [
          [{ 'sha256-checksum': sha(randomBytes(8)) }, gz, 400, 'checksum'],
          [{ 'logical-size': String(content.length - 1) }, gz, 400, 'size'],
          [{}, gz.subarray(0, gz.length - 100), 400, 'cut-off gzip'],
          [{}, Buffer.concat([gz, Buffer.alloc(64)]), 400, 'trailing bytes'],
          [{}, randomBytes(gz.length), 400, 'not gzip'],
        ];
        for (const [headers, body, status, name] of cases) {
          expect([name, (await send(headers, body)).status]).toEqual([name, status]);
        }
        expect(await metricValue(medium.url, 's3dedup_upload_bodies_total', '{read="whole"}')).toBe(
          cases.length,
        );
        expect(await metricValue(medium.url, 's3dedup_upload_body_memory_bytes')).toBe(0);
        expect((await http(`${medium.url}/files/bad-medium`)).status).toBe(404);
        const { meta, blobs: store } = medium.server.backends;
        expect((await dumpMetadata(meta)).blobs).toEqual([]);
        expect(await listObjects(store)).toEqual([]);
      } finally {
        await medium.close();
      }
    });

    it('the same new content uploaded to many paths at once is stored once, with an exact count', async () => {
      const content = randomBytes(100_000);
      const paths = Array.from({ length: 24 }, (_, i) => `same-new/${i}`);
      const answers = await Promise.all(
        paths.map((p, i) => put(srv, p, content, 1, SHAPES[i % SHAPES.length] as Shape)),
      );
      expect(answers.map((r) => r.status)).toEqual(paths.map(() => 200));
      const { blobs } = await dumpMetadata(srv.server.backends.meta);
      expect(blobs.find((b) => b.hash === sha(content))?.refcount).toBe(paths.length);
      const objects = (await listObjects(srv.server.backends.blobs)).filter((k) =>
        k.includes(sha(content)),
      );
      expect(objects).toHaveLength(1);
      await invariantsHold();
    });

    it('concurrent PUT/DELETE of many paths sharing a few contents keeps counts exact', async () => {
      const contents = Array.from({ length: 4 }, (_, i) =>
        Buffer.from(`shared content ${i} `.repeat(300 * (i + 1))),
      );
      const paths = Array.from({ length: 30 }, (_, i) => `mixed/${i % 3}/${i}`);
      let x = 42;
      const rnd = (n: number) => {
        x = (x * 1103515245 + 12345) >>> 0;
        return x % n;
      };
      const ops = Array.from({ length: 600 }, () => {
        const path = paths[rnd(paths.length)] as string;
        const version = 1000 + rnd(50);
        if (rnd(3) === 0) {
          return () =>
            http(`${srv.url}/files/${path}?${pyVersionQuery(version)}`, { method: 'DELETE' });
        }
        const content = contents[rnd(contents.length)] as Buffer;
        return () => put(srv, path, content, version, SHAPES[rnd(SHAPES.length)] as Shape);
      });
      const answers = await pool(ops, 16);
      // Every answer is a success or, for DELETE, "not there": never an error.
      for (const res of answers) expect([200, 404]).toContain(res.status);

      await invariantsHold();
      const { files, blobs } = await dumpMetadata(srv.server.backends.meta);
      const mixed = files.filter((f) => f.path.startsWith('mixed/'));
      for (const c of contents) {
        const pointing = files.filter((f) => f.hash === sha(c)).length;
        expect(blobs.find((b) => b.hash === sha(c))?.refcount ?? 0).toBe(pointing);
      }
      // What a client reads agrees with the metadata for every path.
      for (const path of paths) {
        const got = await http(`${srv.url}/files/${path}`);
        const row = mixed.find((f) => f.path === path);
        if (!row) expect(got.status).toBe(404);
        else {
          expect(got.status).toBe(200);
          expect(sha(gunzipSync(got.body))).toBe(row.hash);
          expect(got.headers['last-modified']).toBe(formatVersion(row.version));
        }
      }
      const listed = (await http(`${srv.url}/list/mixed?${pyVersionQuery(2000)}`)).body.toString();
      expect(listed).toBe(mixed.map((f) => `${f.path.slice('mixed/'.length)}\n`).join(''));
    });
  });
}
