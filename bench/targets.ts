import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { Pool } from 'undici';
import {
  type LargePayload,
  type Payload,
  putHeaders,
  REQUESTS_HEADERS,
  versionQuery,
} from './payloads.js';

/** What a GET must return: the stored gzip bytes, checked by length and digest. */
interface Expected {
  length: number;
  bodySha256: string;
}

/**
 * The operations every scenario runs, against s3dedup or directly against S3.
 * Both sides send the same bytes and do the same work with what comes back
 * (hash it and compare), so the client's own cost is equal on both sides.
 */
export interface Target {
  put(name: string, payload: Payload): Promise<void>;
  get(name: string, expected: Payload): Promise<void>;
  putLarge(name: string, payload: LargePayload): Promise<void>;
  getLarge(name: string, expected: LargePayload): Promise<void>;
  close(): Promise<void>;
}

async function drainChecked(body: AsyncIterable<Uint8Array>, expected: Expected, what: string) {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of body) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  const digest = hash.digest('hex');
  if (bytes !== expected.length || digest !== expected.bodySha256) {
    throw new Error(`${what}: got ${bytes} bytes (${digest}), expected ${expected.length}`);
  }
}

/**
 * s3dedup over HTTP, with requests shaped like the Python Filetracker
 * client's: PUT /files/NAME?last_modified=... with a gzip body and its hints,
 * GET with python-requests' headers (so the stored gzip bytes come back as they are).
 */
export class FiletrackerTarget implements Target {
  private readonly pool: Pool;

  constructor(
    readonly url: string,
    private readonly version: number,
    connections: number,
    /** The statuses that mean done: s3dedup answers 200. */
    private readonly succeeded: (status: number) => boolean = (status) => status === 200,
  ) {
    // Keep-alive connections, like a requests.Session per worker.
    this.pool = new Pool(url, { connections, pipelining: 1, keepAliveTimeout: 60_000 });
  }

  private async send(
    method: 'PUT' | 'GET',
    name: string,
    headers: Record<string, string>,
    body: Buffer | Readable | null,
    expected: Expected | null,
  ): Promise<void> {
    const query = method === 'PUT' ? `?${versionQuery(this.version)}` : '';
    const res = await this.pool.request({ method, path: `/files/${name}${query}`, headers, body });
    const done = method === 'GET' ? res.statusCode === 200 : this.succeeded(res.statusCode);
    if (!done) {
      const text = await res.body.text();
      throw new Error(`${method} /files/${name}: HTTP ${res.statusCode} ${text}`);
    }
    if (expected) await drainChecked(res.body, expected, `GET /files/${name}`);
    else await res.body.dump();
  }

  put(name: string, p: Payload): Promise<void> {
    return this.send('PUT', name, putHeaders({ ...p, length: p.body.length }), p.body, null);
  }

  get(name: string, p: Payload): Promise<void> {
    return this.send('GET', name, { ...REQUESTS_HEADERS }, null, {
      length: p.body.length,
      bodySha256: p.bodySha256,
    });
  }

  putLarge(name: string, p: LargePayload): Promise<void> {
    return this.send('PUT', name, putHeaders(p), p.stream(), null);
  }

  getLarge(name: string, p: LargePayload): Promise<void> {
    return this.send('GET', name, { ...REQUESTS_HEADERS }, null, p);
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}

/** The same radosgw used directly with the AWS SDK: the baseline of every ratio. */
export class DirectS3Target implements Target {
  constructor(
    private readonly client: S3Client,
    private readonly bucket: string,
    private readonly multipart: { partSize: number; inFlight: number },
  ) {}

  async put(name: string, p: Payload): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: name,
        Body: p.body,
        ContentLength: p.body.length,
      }),
    );
  }

  async get(name: string, p: Payload): Promise<void> {
    await this.getChecked(name, { length: p.body.length, bodySha256: p.bodySha256 });
  }

  /** One PutObject streaming the whole body, with its length known up front. */
  async putLarge(name: string, p: LargePayload): Promise<void> {
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: name,
        Body: p.stream(),
        ContentLength: p.length,
      }),
    );
  }

  /**
   * A multipart upload written out with the SDK's commands (lib-storage's
   * Upload is not a dependency): parts of `partSize`, `inFlight` at a time,
   * each part built only when a slot is free, so memory stays at
   * (inFlight + 1) parts.
   */
  async putLargeMultipart(name: string, p: LargePayload): Promise<void> {
    const { partSize, inFlight } = this.multipart;
    const created = await this.client.send(
      new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: name }),
    );
    const uploadId = created.UploadId;
    if (!uploadId) throw new Error('CreateMultipartUpload returned no UploadId');
    const etags: string[] = [];
    const running = new Set<Promise<void>>();
    let partNumber = 0;
    let failure: unknown;
    for (const piece of p.pieces(partSize)) {
      if (failure !== undefined) break;
      const number = ++partNumber;
      const task: Promise<void> = this.client
        .send(
          new UploadPartCommand({
            Bucket: this.bucket,
            Key: name,
            UploadId: uploadId,
            PartNumber: number,
            Body: piece,
            ContentLength: piece.length,
          }),
        )
        .then(
          (out) => {
            etags[number - 1] = out.ETag ?? '';
          },
          (err: unknown) => {
            failure ??= err;
          },
        )
        .finally(() => running.delete(task));
      running.add(task);
      if (running.size >= inFlight) await Promise.race(running);
    }
    await Promise.all(running);
    // Aborted uploads are removed with the bucket (dropBucket).
    if (failure !== undefined) throw failure;
    await this.client.send(
      new CompleteMultipartUploadCommand({
        Bucket: this.bucket,
        Key: name,
        UploadId: uploadId,
        MultipartUpload: { Parts: etags.map((ETag, i) => ({ ETag, PartNumber: i + 1 })) },
      }),
    );
  }

  async getLarge(name: string, p: LargePayload): Promise<void> {
    await this.getChecked(name, p);
  }

  async remove(name: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: name }));
  }

  private async getChecked(name: string, expected: Expected): Promise<void> {
    const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: name }));
    // In Node the SDK's body is an http.IncomingMessage (a Readable).
    if (!(out.Body instanceof Readable)) throw new Error(`GetObject ${name}: body is not a stream`);
    await drainChecked(out.Body, expected, `GetObject ${name}`);
  }

  async close(): Promise<void> {}
}

/**
 * Several s3dedup instances behind one name, as a load balancer would spread
 * clients: request i goes to instance i mod n. A file may be written through
 * one instance and read through another, which is the point.
 */
export class RoundRobinTarget implements Target {
  private next = 0;

  constructor(private readonly targets: Target[]) {}

  private pick(): Target {
    const target = this.targets[this.next++ % this.targets.length];
    if (!target) throw new Error('RoundRobinTarget needs at least one target');
    return target;
  }

  put(name: string, p: Payload): Promise<void> {
    return this.pick().put(name, p);
  }

  get(name: string, p: Payload): Promise<void> {
    return this.pick().get(name, p);
  }

  putLarge(name: string, p: LargePayload): Promise<void> {
    return this.pick().putLarge(name, p);
  }

  getLarge(name: string, p: LargePayload): Promise<void> {
    return this.pick().getLarge(name, p);
  }

  async close(): Promise<void> {
    await Promise.all(this.targets.map((t) => t.close()));
  }
}
