import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  type S3Client,
} from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { S3BlobStore } from '../../src/blobstore/s3.js';
import type { S3Capabilities } from '../../src/blobstore/s3-capabilities.js';
import { extraRadosgw } from '../services/ceph.js';
import { capabilityProxy } from '../support/capability-proxy.js';
import { faultProxy } from '../support/fault-proxy.js';
import { digestOf, http, pyClient, pyVersionQuery } from '../support/http.js';
import { postgresEnv } from '../support/postgres.js';
import { runCli, startServerProcess } from '../support/process.js';
import { type S3Name, s3Target, testS3Client } from '../support/s3.js';
import {
  s3Env,
  s3Profile,
  startTestServer,
  swiftProfile,
  type TestServer,
  uniqueBucket,
} from '../support/server.js';
import { eventually, temporaryFiles } from '../support/state.js';
import { makeTempDir } from '../support/tmp.js';

const MiB = 1024 * 1024;
const V = 1234567890;
const q = `?${pyVersionQuery(V)}`;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

const sdk = () => testS3Client();

async function objectBytes(client: S3Client, bucket: string, key: string): Promise<Buffer> {
  const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from(
    await (out.Body as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray(),
  );
}

async function keysIn(client: S3Client, bucket: string): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  return (out.Contents ?? []).map((o) => o.Key ?? '').sort();
}

function counts(srv: TestServer): Record<string, number> {
  const store = srv.server.backends.blobs as S3BlobStore;
  return Object.fromEntries(store.requestCounts);
}

/** What each S3 server was found to support (the start-up probe, src/blobstore/s3-capabilities.ts). */
const EXPECTED: Record<S3Name, S3Capabilities> = {
  // Ceph 16 ignores If-None-Match on CompleteMultipartUpload.
  s3: { conditionalPut: 'honoured', conditionalComplete: 'ignored', batchDelete: 'yes' },
  // Swift's s3api 2.30 answers 501 to a conditional PutObject, wants Content-MD5 on DeleteObjects.
  swift: {
    conditionalPut: 'refused',
    conditionalComplete: 'honoured',
    batchDelete: 'with-content-md5',
  },
};

describe.each(['s3', 'swift'] as const)('S3 blob store through the server (%s)', (name) => {
  let srv: TestServer;
  let client: S3Client;
  beforeAll(async () => {
    srv = await startTestServer(name === 's3' ? s3Profile : swiftProfile, {
      S3_PART_SIZE: String(5 * MiB),
      SPILL_THRESHOLD: String(MiB),
    });
    client = testS3Client(s3Target(name));
  });

  it('found out what the server supports, and left nothing of the probe behind', async () => {
    const store = srv.server.backends.blobs as S3BlobStore;
    expect(store.capabilities).toEqual(EXPECTED[name]);
    const uploads: string[] = [];
    for await (const u of store.openUploads()) uploads.push(u.key);
    expect(uploads).toEqual([]);
    const objects: string[] = [];
    for await (const o of store.list({ prefix: '.s3dedup-probe/' })) objects.push(o.key);
    expect(objects).toEqual([]);
  });
  afterAll(async () => {
    await srv?.close();
    client?.destroy();
  });

  it('creates its bucket and stores blobs as ab/cd/<sha256> holding gzip bytes', async () => {
    const content = Buffer.from('layout check '.repeat(100));
    const gz = gzipSync(content, { level: 9 });
    await pyClient.put(srv.url, '/layout/client-gzip.txt', content, V);
    const raw = Buffer.from('raw upload, compressed by the server '.repeat(50));
    await http(`${srv.url}/files/layout/raw.txt${q}`, { method: 'PUT', body: raw });

    const keys = await keysIn(client, srv.config.BUCKET_NAME);
    const h1 = sha(content);
    const h2 = sha(raw);
    expect(keys).toEqual(
      [
        `${h1.slice(0, 2)}/${h1.slice(2, 4)}/${h1}`,
        `${h2.slice(0, 2)}/${h2.slice(2, 4)}/${h2}`,
      ].sort(),
    );
    // The client's gzip bytes as they were sent; the raw upload as gzip of its content.
    expect(
      (
        await objectBytes(
          client,
          srv.config.BUCKET_NAME,
          `${h1.slice(0, 2)}/${h1.slice(2, 4)}/${h1}`,
        )
      ).equals(gz),
    ).toBe(true);
    const stored = await objectBytes(
      client,
      srv.config.BUCKET_NAME,
      `${h2.slice(0, 2)}/${h2.slice(2, 4)}/${h2}`,
    );
    expect(gunzipSync(stored).equals(raw)).toBe(true);
  });

  it('uploads nothing for content that is already stored', async () => {
    const content = randomBytes(300_000);
    expect((await pyClient.put(srv.url, '/dedup/first', content, V)).status).toBe(200);
    const objectsBefore = await keysIn(client, srv.config.BUCKET_NAME);
    const before = counts(srv);
    // The same content again: Python-client shape, raw with hash, and raw without any hint.
    expect((await pyClient.put(srv.url, '/dedup/second', content, V)).status).toBe(200);
    expect((await pyClient.put(srv.url, '/dedup/third', content, V, false)).status).toBe(200);
    expect(
      (await http(`${srv.url}/files/dedup/fourth${q}`, { method: 'PUT', body: content })).status,
    ).toBe(200);
    const after = counts(srv);
    for (const upload of [
      'PutObjectCommand',
      'CreateMultipartUploadCommand',
      'UploadPartCommand',
    ]) {
      expect(after[upload] ?? 0, upload).toBe(before[upload] ?? 0);
    }
    expect(await keysIn(client, srv.config.BUCKET_NAME)).toEqual(objectsBefore);
    for (const name of ['second', 'third', 'fourth']) {
      expect(digestOf((await pyClient.get(srv.url, `/dedup/${name}`)).content)).toBe(
        digestOf(content),
      );
    }
  });

  it('takes the multipart path above the part size, and the object is whole', async () => {
    const content = randomBytes(17 * MiB);
    const before = counts(srv);
    expect((await pyClient.put(srv.url, '/multipart/big.bin', content, V)).status).toBe(200);
    const after = counts(srv);
    expect(
      (after.CreateMultipartUploadCommand ?? 0) - (before.CreateMultipartUploadCommand ?? 0),
    ).toBe(1);
    expect((after.UploadPartCommand ?? 0) - (before.UploadPartCommand ?? 0)).toBe(4); // 17 MiB in 5 MiB parts
    expect(
      (after.CompleteMultipartUploadCommand ?? 0) - (before.CompleteMultipartUploadCommand ?? 0),
    ).toBe(1);
    const got = await pyClient.get(srv.url, '/multipart/big.bin');
    expect(digestOf(got.content)).toBe(digestOf(content));
    // Unhinted uploads of that size go multipart from the spill file too.
    const other = randomBytes(12 * MiB);
    expect(
      (await http(`${srv.url}/files/multipart/raw.bin${q}`, { method: 'PUT', body: other })).status,
    ).toBe(200);
    const back = await http(`${srv.url}/files/multipart/raw.bin`, {
      headers: { 'accept-encoding': 'identity' },
    });
    expect(digestOf(back.body)).toBe(digestOf(other));
  });

  it('aborts the multipart upload when the client disconnects midway', async () => {
    const content = randomBytes(30 * MiB);
    const gz = gzipSync(content, { level: 1 });
    const before = counts(srv);
    const url = new URL(srv.url);
    await new Promise<void>((resolve, reject) => {
      const socket = connect(Number(url.port), url.hostname, () => {
        socket.write(
          [
            `PUT /files/multipart/cut.bin${q} HTTP/1.1`,
            `Host: ${url.host}`,
            'Content-Encoding: gzip',
            `SHA256-Checksum: ${sha(content)}`,
            `Content-Length: ${gz.length}`,
            '',
            '',
          ].join('\r\n'),
        );
        // Enough for a few parts to be uploaded, then go away.
        socket.write(gz.subarray(0, 18 * MiB), () => setTimeout(() => socket.destroy(), 500));
      });
      socket.on('close', () => resolve());
      socket.on('error', reject);
    });
    await eventually(async () => {
      expect(await temporaryFiles(srv)).toEqual([]);
      expect(
        (counts(srv).AbortMultipartUploadCommand ?? 0) - (before.AbortMultipartUploadCommand ?? 0),
      ).toBe(1);
    }, 10_000);
    expect(
      (counts(srv).UploadPartCommand ?? 0) - (before.UploadPartCommand ?? 0),
    ).toBeGreaterThanOrEqual(2);
    expect((await http(`${srv.url}/files/multipart/cut.bin`)).status).toBe(404);
    expect(
      (await keysIn(client, srv.config.BUCKET_NAME)).some((k) => k.endsWith(sha(content))),
    ).toBe(false);
  });

  it('never lets a second upload of a large content overwrite the first', async () => {
    const content = randomBytes(11 * MiB);
    const first = gzipSync(content, { level: 1 });
    const second = gzipSync(content, { level: 2 });
    expect(first.equals(second)).toBe(false);
    const put = (path: string, body: Buffer) =>
      http(`${srv.url}/files/${path}${q}`, {
        method: 'PUT',
        headers: { 'content-encoding': 'gzip', 'sha256-checksum': sha(content) },
        body,
      });
    const [a, b] = await Promise.all([put('race/a', first), put('race/b', second)]);
    expect([a.status, b.status]).toEqual([200, 200]);
    const stored = await objectBytes(
      client,
      srv.config.BUCKET_NAME,
      `${sha(content).slice(0, 2)}/${sha(content).slice(2, 4)}/${sha(content)}`,
    );
    const row = await srv.server.backends.meta.getBlob(sha(content));
    expect(row?.storedSize).toBe(stored.length);
    expect(stored.equals(first) || stored.equals(second)).toBe(true);
    for (const p of ['race/a', 'race/b']) {
      const got = await http(`${srv.url}/files/${p}`);
      expect(got.headers['content-length']).toBe(String(stored.length));
      expect(got.body.equals(stored)).toBe(true);
    }
  });

  it('two instances racing one content, small and large, leave exactly one of the uploads', async () => {
    // Two servers on one bucket, coordinated by PostgreSQL locks, as behind a
    // load balancer. Through a proxy that holds HeadObject answers back: a
    // check made outside the commit lock would let both create.
    const proxy = await capabilityProxy(s3Target(name).endpoint, { delayHeadMs: 200 });
    const env: Record<string, string> = {
      ...s3Env(s3Target(name)),
      ...(await postgresEnv()),
      S3_ENDPOINT: proxy.url,
      S3_PART_SIZE: String(5 * MiB),
    };
    const [one, two] = await Promise.all([
      startTestServer(s3Profile, env),
      startTestServer(s3Profile, env),
    ]);
    try {
      // Four encodings of one content, in one to four gzip members, so each
      // upload has other bytes and another size; the large one takes two parts.
      for (const size of [100 * 1024, 12 * MiB]) {
        const content = randomBytes(size);
        const bodies = [1, 2, 3, 4].map((members) =>
          Buffer.concat(
            Array.from({ length: members }, (_, m) =>
              gzipSync(
                content.subarray(
                  Math.floor((size * m) / members),
                  Math.floor((size * (m + 1)) / members),
                ),
                { level: 1 },
              ),
            ),
          ),
        );
        expect(new Set(bodies.map((b) => b.length)).size).toBe(4);
        const answers = await Promise.all(
          bodies.map((body, i) =>
            http(`${(i % 2 ? one : two).url}/files/race${size}/${i}${q}`, {
              method: 'PUT',
              headers: { 'content-encoding': 'gzip', 'sha256-checksum': sha(content) },
              body,
            }),
          ),
        );
        expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200]);
        const key = `${sha(content).slice(0, 2)}/${sha(content).slice(2, 4)}/${sha(content)}`;
        const stored = await objectBytes(client, env.BUCKET_NAME ?? '', key);
        expect(bodies.filter((b) => b.equals(stored))).toHaveLength(1);
        expect(proxy.seen.createsOf.get(`/${env.BUCKET_NAME}/${key}`)).toBe(1);
        expect((await one.server.backends.meta.getBlob(sha(content)))?.storedSize).toBe(
          stored.length,
        );
        for (const [i, srv] of [one, two, one, two].entries()) {
          const got = await http(`${srv.url}/files/race${size}/${i}`);
          expect(got.body.equals(stored)).toBe(true);
        }
      }
    } finally {
      await one.close();
      await two.close();
      await proxy.close();
    }
  }, 60_000);
});

describe('S3 capabilities', () => {
  it.each(['s3', 'swift'] as const)(
    'the start-up log says in one line what %s supports',
    async (name) => {
      const dir = await makeTempDir();
      const proc = await startServerProcess({
        ...s3Env(s3Target(name)),
        SQLITE_PATH: join(dir.path, 'kv.db'),
        TEMP_DIR: join(dir.path, 'tmp'),
      });
      try {
        const line = proc
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as { msg: string; capabilities?: S3Capabilities })
          .find((l) => l.msg.startsWith('S3 capabilities:'));
        expect(line?.capabilities).toEqual(EXPECTED[name]);
        // Quoted in the docs: what an operator sees.
        console.log(`[capabilities] ${name}: ${line?.msg}`);
      } finally {
        await proc.stop();
        await dir.remove();
      }
    },
  );

  it('with conditional PutObject refused and DeleteObjects wanting Content-MD5 (a proxy in front of radosgw), the safe paths are taken and correct', async () => {
    const proxy = await capabilityProxy(inject('s3').endpoint, {
      refuseConditionalPut: true,
      requireContentMd5: true,
      delayHeadMs: 200,
    });
    const srv = await startTestServer(s3Profile, { S3_ENDPOINT: proxy.url });
    const store = srv.server.backends.blobs as S3BlobStore;
    try {
      expect(store.capabilities).toEqual({
        conditionalPut: 'refused',
        conditionalComplete: 'ignored',
        batchDelete: 'with-content-md5',
      });
      const probed = proxy.seen.conditionalPuts;
      // Concurrent uploads of one new content, as gzip of several levels.
      const content = randomBytes(200_000);
      const bodies = [1, 5, 9].map((level) => gzipSync(content, { level }));
      const answers = await Promise.all(
        bodies.map((body, i) =>
          http(`${srv.url}/files/safe/${i}${q}`, {
            method: 'PUT',
            headers: { 'content-encoding': 'gzip', 'sha256-checksum': sha(content) },
            body,
          }),
        ),
      );
      expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
      // No conditional PutObject was tried after the probe, and the object was written once.
      expect(proxy.seen.conditionalPuts).toBe(probed);
      const key = `${sha(content).slice(0, 2)}/${sha(content).slice(2, 4)}/${sha(content)}`;
      expect(proxy.seen.putsOf.get(`/${srv.config.BUCKET_NAME}/${key}`)).toBe(1);
      expect(proxy.seen.createsOf.get(`/${srv.config.BUCKET_NAME}/${key}`)).toBe(1);
      const admin = sdk();
      const stored = await objectBytes(admin, srv.config.BUCKET_NAME, key);
      admin.destroy();
      expect(bodies.filter((b) => b.equals(stored))).toHaveLength(1);
      expect((await srv.server.backends.meta.getBlob(sha(content)))?.storedSize).toBe(
        stored.length,
      );
      for (const i of [0, 1, 2]) {
        expect((await http(`${srv.url}/files/safe/${i}`)).body.equals(stored)).toBe(true);
      }
      // Batch deletes go through with Content-MD5.
      const batches = proxy.seen.batchDeletes;
      await store.deleteMany([key, 'ab/cd/absent']);
      expect(await store.stat(key)).toBeNull();
      expect(proxy.seen.batchDeletes).toBe(batches + 1);
    } finally {
      await srv.close();
      await proxy.close();
    }
  });
});

describe('S3 server the store cannot use', () => {
  it('without multipart uploads: start-up stops with a message naming what is missing', async () => {
    const proxy = await capabilityProxy(inject('s3').endpoint, { refuseMultipart: true });
    const dir = await makeTempDir();
    try {
      const { code, output } = await runCli(['server'], {
        ...s3Env(),
        S3_ENDPOINT: proxy.url,
        SQLITE_PATH: join(dir.path, 'kv.db'),
        TEMP_DIR: join(dir.path, 'tmp'),
        LISTEN_PORT: '0',
      });
      expect(code).toBe(1);
      expect(output).toMatch(
        /S3 at http:\/\/127\.0\.0\.1:\d+ cannot be used for bucket .*: multipart upload failed .*NotImplemented/,
      );
    } finally {
      await proxy.close();
      await dir.remove();
    }
  });
});

describe('S3 failures', () => {
  it('wrong credentials: the server refuses to start with a clear message', async () => {
    const dir = await makeTempDir();
    try {
      const { code, output } = await runCli(['server'], {
        ...s3Env(),
        S3_SECRET_KEY: 'not-the-secret',
        SQLITE_PATH: join(dir.path, 'kv.db'),
        TEMP_DIR: join(dir.path, 'tmp'),
        LISTEN_PORT: '0',
      });
      expect(code).toBe(1);
      expect(output).toMatch(
        /refused access to bucket .*HTTP 403.*S3_ACCESS_KEY and S3_SECRET_KEY/,
      );
    } finally {
      await dir.remove();
    }
  });

  it('S3 stopped mid-run: 503 (never 404) within a bounded time, then recovery when it is back', async () => {
    const rgw = await extraRadosgw(inject('s3').dir);
    const srv = await startTestServer(s3Profile, {
      S3_ENDPOINT: rgw.endpoint,
      S3_REQUEST_TIMEOUT: '2',
      S3_CONNECT_TIMEOUT: '1',
    });
    try {
      const content = Buffer.from('survives an S3 outage '.repeat(100));
      expect((await pyClient.put(srv.url, '/outage/file', content, V)).status).toBe(200);
      await rgw.stop();

      const started = Date.now();
      const get = await http(`${srv.url}/files/outage/file`);
      expect(get.status).toBe(503);
      expect(get.headers['x-exception']).toMatch(/storage unavailable/);
      const put = await pyClient.put(
        srv.url,
        '/outage/new',
        Buffer.from('new content during the outage'),
        V,
      );
      expect(put.status).toBe(503);
      expect(Date.now() - started).toBeLessThan(20_000);
      // Metadata-only answers keep working; health tells the operator.
      expect((await http(`${srv.url}/files/outage/file`, { method: 'HEAD' })).status).toBe(200);
      expect((await http(`${srv.url}/health`)).status).toBe(503);

      await rgw.start();
      await eventually(
        async () => expect((await http(`${srv.url}/health`)).status).toBe(200),
        15_000,
      );
      expect(digestOf((await pyClient.get(srv.url, '/outage/file')).content)).toBe(
        digestOf(content),
      );
      expect((await pyClient.put(srv.url, '/outage/new', Buffer.from('after'), V)).status).toBe(
        200,
      );
    } finally {
      await srv.close();
      await rgw.stop().catch(() => {});
    }
  }, 90_000);

  /**
   * A server whose S3 sits behind a fault proxy, with short S3 timeouts.
   * The bucket is created first, directly: with one-second timeouts,
   * radosgw's first bucket creation (it makes its pools lazily) could time out.
   */
  async function behindFaultProxy(env: Record<string, string>) {
    const proxy = await faultProxy(inject('s3').endpoint);
    const bucket = uniqueBucket();
    const admin = sdk();
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    admin.destroy();
    const srv = await startTestServer(s3Profile, {
      BUCKET_NAME: bucket,
      S3_ENDPOINT: proxy.url,
      S3_CONNECT_TIMEOUT: '1',
      ...env,
    });
    return { proxy, srv };
  }

  it('a request waiting on a hung S3 longer than CLIENT_IDLE_TIMEOUT gets its 503, not a dropped connection', async () => {
    const { proxy, srv } = await behindFaultProxy({
      // Three attempts of 1 s each (and more requests for a PUT): several
      // times the client's idle timeout.
      S3_REQUEST_TIMEOUT: '1',
      // The client is silent for the whole wait, but it is waiting for us.
      CLIENT_IDLE_TIMEOUT: '1',
    });
    try {
      const content = Buffer.from('stored before S3 hangs '.repeat(100));
      expect((await pyClient.put(srv.url, '/hung/file', content, V)).status).toBe(200);
      proxy.setMode('blackhole');
      const get = await http(`${srv.url}/files/hung/file`);
      expect(get.status).toBe(503);
      expect(get.headers['x-exception']).toMatch(/storage|S3/i);
      const put = await pyClient.put(srv.url, '/hung/new', Buffer.from('while S3 hangs'), V);
      expect(put.status).toBe(503);
      proxy.setMode('pass');
      expect((await http(`${srv.url}/files/hung/file`)).status).toBe(200);
    } finally {
      await srv.close();
      await proxy.close();
    }
  }, 60_000);

  it('S3 hanging or answering 500: 503 within a bounded time, then recovery', async () => {
    const { proxy, srv } = await behindFaultProxy({ S3_REQUEST_TIMEOUT: '1' });
    try {
      const content = Buffer.from('behind a flaky network '.repeat(100));
      expect((await pyClient.put(srv.url, '/flaky/file', content, V)).status).toBe(200);
      for (const mode of ['blackhole', 'error'] as const) {
        proxy.setMode(mode);
        const started = Date.now();
        const get = await http(`${srv.url}/files/flaky/file`);
        expect(get.status, mode).toBe(503);
        const put = await pyClient.put(
          srv.url,
          `/flaky/${mode}`,
          Buffer.from(`written while ${mode}`),
          V,
        );
        expect(put.status, mode).toBe(503);
        // Three attempts of at most S3_REQUEST_TIMEOUT each, plus backoff, per request.
        expect(Date.now() - started, mode).toBeLessThan(15_000);
        proxy.setMode('pass');
        expect((await http(`${srv.url}/files/flaky/file`)).status).toBe(200);
      }
      expect(await temporaryFiles(srv)).toEqual([]);
    } finally {
      await srv.close();
      await proxy.close();
    }
  }, 60_000);
});

describe('bucket creation', () => {
  it('a missing bucket is created at start-up; an existing one is reused', async () => {
    const bucket = uniqueBucket();
    const first = await startTestServer(s3Profile, { BUCKET_NAME: bucket });
    await first.close();
    const second = await startTestServer(s3Profile, { BUCKET_NAME: bucket });
    await second.close();
    const client = sdk();
    try {
      expect(await keysIn(client, bucket)).toEqual([]);
    } finally {
      client.destroy();
    }
  });
});
