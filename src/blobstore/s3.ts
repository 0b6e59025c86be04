import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListMultipartUploadsCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { AppError, backendUnavailable, internal } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { crashPoint } from '../runtime/faults.js';
import type {
  BlobInfo,
  BlobListing,
  BlobReader,
  BlobStore,
  PutOptions,
  PutResult,
} from './port.js';
import {
  deleteObjects,
  describeCapabilities,
  probeCapabilities,
  type S3Capabilities,
} from './s3-capabilities.js';
import { describeError as describe, statusOf } from './s3-errors.js';
import { UploadBuffers } from './upload-buffers.js';

/** The uploads whose body S3_PAYLOAD_SIGNING may leave out of the signature. */
const UNSIGNED_COMMANDS = new Set(['PutObjectCommand', 'UploadPartCommand']);

/** Whether uploads sign a hash of their bytes: always over plain HTTP under `auto`. */
export function signsPayload(o: Pick<S3StoreOptions, 'endpoint' | 'payloadSigning'>): boolean {
  if (o.payloadSigning !== 'auto') return o.payloadSigning === 'signed';
  return new URL(o.endpoint).protocol !== 'https:';
}

/**
 * Makes PutObject and UploadPart send UNSIGNED-PAYLOAD. SigV4 signs a SHA-256
 * of every Buffer body unless the request already names its payload hash: a
 * second full pass over each part and object, about 0.75 ms of CPU per MB
 * here, on bytes whose content hash the dedup core has just checked. Over TLS
 * the bytes are protected in transit anyway, up to where TLS ends
 * (docs/configuration.md). The build step comes before signing and retries.
 */
export function sendUnsignedPayloads(client: S3Client): void {
  client.middlewareStack.add(
    (next, context) => (args) => {
      const request = args.request as { headers?: Record<string, string> };
      if (UNSIGNED_COMMANDS.has(context.commandName ?? '') && request.headers) {
        request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD';
      }
      return next(args);
    },
    { step: 'build', name: 's3dedupUnsignedPayload' },
  );
}

/** S3's limit on the number of parts of one multipart upload. */
const MAX_PARTS = 10_000;
/** S3's minimum size of every part but the last. */
export const MIN_PART_SIZE = 5 * 1024 * 1024;

export interface S3StoreOptions {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  forcePathStyle: boolean;
  /** Whether PutObject and UploadPart sign a SHA-256 of their body; `auto`: only over plain HTTP. */
  payloadSigning: 'auto' | 'signed' | 'unsigned';
  bucket: string;
  /** Bytes per multipart part; raised if needed so `maxObjectSize` fits in 10,000 parts. */
  partSize: number;
  /** Parts of one upload sent at the same time. */
  partsPerUpload: number;
  /** Bytes of all uploads held in memory at once (see UploadBuffers). */
  uploadBuffer: number;
  /** The largest object we may be asked to store (stored, compressed bytes). */
  maxObjectSize: number;
  connectTimeoutMs: number;
  /** Limit on one S3 request, from sending it to the response headers. */
  requestTimeoutMs: number;
  /** Limit on silence on an S3 connection, including while a body streams. */
  idleTimeoutMs: number;
  maxSockets: number;
  maxAttempts: number;
  logger: Logger;
}

/**
 * The blob store on any S3-compatible server (AWS, MinIO, Ceph radosgw,
 * OpenStack Swift's s3api, Garage).
 *
 * Uploads: an object that fits in one part is buffered and sent with a single
 * PutObject of known length; larger ones go as a multipart upload with at most
 * `partsPerUpload` parts in flight, all part memory drawn from one budget
 * (UploadBuffers). `beforeCommit` runs before the PutObject / the
 * CompleteMultipartUpload, so content that fails verification never becomes
 * visible.
 *
 * An existing key is never overwritten. Where the server honours
 * If-None-Match: * (found out at start-up, see s3-capabilities.ts) the create
 * itself says so; elsewhere (Swift refuses it on PutObject, Ceph 16 ignores it
 * on CompleteMultipartUpload) a HeadObject comes just before the create, and
 * callers that may race on one key serialize that step (the dedup core holds
 * a `commit:<hash>` lock there, across instances with PostgreSQL locks).
 */
export class S3BlobStore implements BlobStore {
  private readonly client: S3Client;
  private readonly buffers: UploadBuffers;
  readonly partSize: number;
  /** Requests sent, by command name (tests and metrics read it). */
  readonly requestCounts = new Map<string, number>();
  /** Until the probe has run, assume nothing optional. */
  private caps: S3Capabilities = {
    conditionalPut: 'refused',
    conditionalComplete: 'refused',
    batchDelete: 'no',
  };

  private constructor(private readonly o: S3StoreOptions) {
    const neededPart = Math.ceil(o.maxObjectSize / MAX_PARTS / (1024 * 1024)) * 1024 * 1024;
    this.partSize = Math.max(o.partSize, MIN_PART_SIZE, neededPart);
    if (this.partSize > o.partSize) {
      o.logger.info(
        { partSize: this.partSize },
        'S3 part size raised so the largest upload fits in 10,000 parts',
      );
    }
    this.buffers = new UploadBuffers(
      Math.max(o.uploadBuffer, this.partSize),
      this.partSize,
      o.partsPerUpload + 1,
    );
    const agentOptions = { keepAlive: true, maxSockets: o.maxSockets };
    this.client = new S3Client({
      endpoint: o.endpoint,
      region: o.region,
      forcePathStyle: o.forcePathStyle,
      credentials: { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey },
      maxAttempts: o.maxAttempts,
      // Newer SDKs send streamed bodies with aws-chunked encoding and a checksum
      // trailer: radosgw answers 411 and some servers store the framing as data.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: new NodeHttpHandler({
        connectionTimeout: o.connectTimeoutMs,
        requestTimeout: o.requestTimeoutMs,
        throwOnRequestTimeout: true,
        socketTimeout: o.idleTimeoutMs,
        httpAgent: new HttpAgent(agentOptions),
        httpsAgent: new HttpsAgent(agentOptions),
      }),
    });
    this.client.middlewareStack.add(
      (next, context) => (args) => {
        const name = context.commandName ?? 'unknown';
        this.requestCounts.set(name, (this.requestCounts.get(name) ?? 0) + 1);
        return next(args);
      },
      { step: 'initialize', name: 's3dedupRequestCounter' },
    );
    if (!signsPayload(o)) sendUnsignedPayloads(this.client);
  }

  /**
   * Connects, checks the credentials, creates the bucket if it is missing and
   * finds out what the server supports (logged in one line).
   */
  static async open(options: S3StoreOptions, startupDeadlineMs = 30_000): Promise<S3BlobStore> {
    const store = new S3BlobStore(options);
    try {
      await store.ensureBucket(startupDeadlineMs);
      store.caps = await probeCapabilities(store.client, options.bucket, {
        endpoint: options.endpoint,
        // As for creating the bucket: radosgw makes its pools on the first writes.
        requestTimeoutMs: Math.max(options.requestTimeoutMs, 30_000),
        deadline: Date.now() + startupDeadlineMs,
      });
      options.logger.info(
        { endpoint: options.endpoint, capabilities: store.caps },
        `S3 capabilities: ${describeCapabilities(store.caps)}`,
      );
    } catch (err) {
      store.client.destroy();
      throw err;
    }
    return store;
  }

  private async ensureBucket(deadlineMs: number): Promise<void> {
    const { bucket, endpoint } = this.o;
    const until = Date.now() + deadlineMs;
    // Creating a bucket can take seconds (radosgw creates its pools lazily),
    // far longer than the per-request limit tuned for serving files.
    const slow = { requestTimeout: Math.max(this.o.requestTimeoutMs, 30_000) };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.client.send(new HeadBucketCommand({ Bucket: bucket }), slow);
        return;
      } catch (err) {
        const status = statusOf(err);
        if (status === 404) break;
        if (status === 403 || status === 401) {
          throw new Error(
            `S3 at ${endpoint} refused access to bucket "${bucket}" (HTTP ${status}): check S3_ACCESS_KEY and S3_SECRET_KEY, and that the bucket is yours`,
          );
        }
        // Not reachable yet (a compose file starting everything at once): retry for a while.
        if (Date.now() > until)
          throw new Error(`S3 at ${endpoint} is not reachable: ${describe(err)}`);
        this.o.logger.warn({ attempt, err: describe(err) }, 'S3 not reachable yet; retrying');
        await new Promise((r) => setTimeout(r, Math.min(2000, 200 * attempt)));
      }
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: bucket }), slow);
      this.o.logger.info({ bucket }, 'created the S3 bucket');
    } catch (err) {
      // Another instance created it first.
      if ((err as { name?: string }).name !== 'BucketAlreadyOwnedByYou') {
        throw new Error(`could not create S3 bucket "${bucket}": ${describe(err)}`);
      }
    }
  }

  async put(key: string, input: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    const { signal } = options;
    if (Buffer.isBuffer(input) && input.length < this.partSize) {
      // Already whole in memory: sent as it is. Copying it into a fresh part
      // buffer cost an allocation and its page faults per upload.
      let release: (() => void) | undefined;
      try {
        release = await this.buffers.reserve(input.length, signal);
        const mode = await options.beforeCommit?.();
        return await this.putSingle(key, input, mode === 'replace', signal);
      } catch (err) {
        throw this.mapError(err, `storing ${key}`);
      } finally {
        release?.();
      }
    }
    // A larger buffer is copied into part buffers like any stream's bytes.
    const body = Buffer.isBuffer(input) ? Readable.from([input]) : input;
    // Reads of the body do not watch the signal themselves: destroying the body ends them.
    const onAbort = () =>
      body.destroy(Object.assign(new Error('upload aborted'), { name: 'AbortError' }));
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    const chunks = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
    const reader = new PartReader(chunks);
    try {
      // A small object of known size reserves only its size, not a whole part.
      const firstSize =
        options.size !== undefined && options.size < this.partSize ? options.size : this.partSize;
      const first = await this.buffers.take(firstSize, signal);
      let handedOver = false;
      try {
        const firstLength = await reader.fill(first);
        if (reader.ended) {
          const mode = await options.beforeCommit?.();
          handedOver = true;
          try {
            return await this.putSingle(
              key,
              first.subarray(0, firstLength),
              mode === 'replace',
              signal,
            );
          } finally {
            this.buffers.release(first);
          }
        }
        // More than one buffer: a multipart upload (also when a declared size was too small).
        handedOver = true;
        return await this.putMultipart(key, reader, first, firstLength, options);
      } finally {
        if (!handedOver) this.buffers.release(first);
      }
    } catch (err) {
      body.destroy();
      throw this.mapError(err, `storing ${key}`);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }

  /** Sends `data` with one PutObject. */
  private async putSingle(
    key: string,
    data: Buffer,
    replace: boolean,
    signal?: AbortSignal,
  ): Promise<PutResult> {
    const conditional = !replace && this.caps.conditionalPut === 'honoured';
    if (!conditional && !replace) {
      const existing = await this.stat(key, { signal });
      if (existing) return { created: false, size: existing.size };
    }
    try {
      // No abort signal: the body has checked out, and a create cut off
      // halfway could still land after the commit lock is released.
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.o.bucket,
          Key: key,
          Body: data,
          ContentLength: data.length,
          ContentType: 'application/gzip',
          IfNoneMatch: conditional ? '*' : undefined,
        }),
      );
    } catch (err) {
      return await this.afterFailedCreate(key, err);
    }
    return { created: true, size: data.length };
  }

  private async putMultipart(
    key: string,
    reader: PartReader,
    first: Buffer,
    firstLength: number,
    options: PutOptions,
  ): Promise<PutResult> {
    const { signal } = options;
    const bucket = this.o.bucket;
    let uploadId: string | undefined;
    const parts: { PartNumber: number; ETag: string }[] = [];
    const inFlight = new Set<Promise<void>>();
    let failure: unknown;
    let total = 0;

    const send = (partNumber: number, buffer: Buffer, length: number) => {
      total += length;
      const task = this.client
        .send(
          new UploadPartCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: partNumber,
            Body: buffer.subarray(0, length),
            ContentLength: length,
          }),
          { abortSignal: signal },
        )
        .then(
          (res) => {
            parts.push({ PartNumber: partNumber, ETag: res.ETag ?? '' });
          },
          (err: unknown) => {
            failure ??= err;
          },
        )
        .finally(() => {
          this.buffers.release(buffer);
          inFlight.delete(task);
        });
      inFlight.add(task);
    };

    try {
      const created = await this.client.send(
        new CreateMultipartUploadCommand({
          Bucket: bucket,
          Key: key,
          ContentType: 'application/gzip',
        }),
        { abortSignal: signal },
      );
      uploadId = created.UploadId;
      if (!uploadId) throw internal('S3 did not return an UploadId');
    } catch (err) {
      this.buffers.release(first);
      throw err;
    }

    try {
      send(1, first, firstLength);
      for (let partNumber = 2; !reader.ended && failure === undefined; partNumber++) {
        while (inFlight.size >= this.o.partsPerUpload) await Promise.race(inFlight);
        if (failure !== undefined) break;
        const buffer = await this.buffers.take(this.partSize, signal);
        let length: number;
        try {
          length = await reader.fill(buffer);
        } catch (err) {
          this.buffers.release(buffer);
          throw err;
        }
        if (length === 0) {
          this.buffers.release(buffer);
          break;
        }
        if (partNumber > MAX_PARTS) {
          this.buffers.release(buffer);
          throw internal(`object ${key} needs more than ${MAX_PARTS} parts`);
        }
        send(partNumber, buffer, length);
      }
      await Promise.all(inFlight);
      if (failure !== undefined) throw failure;

      const replace = (await options.beforeCommit?.()) === 'replace';
      crashPoint('s3.parts-uploaded');
      const conditional = !replace && this.caps.conditionalComplete === 'honoured';
      if (!conditional && !replace) {
        const existing = await this.stat(key, { signal });
        if (existing) {
          await this.abort(key, uploadId);
          return { created: false, size: existing.size };
        }
      }
      parts.sort((a, b) => a.PartNumber - b.PartNumber);
      try {
        // No abort signal, as for PutObject (see putSingle).
        await this.client.send(
          new CompleteMultipartUploadCommand({
            Bucket: bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            IfNoneMatch: conditional ? '*' : undefined,
          }),
        );
      } catch (err) {
        const outcome = await this.afterFailedCreate(key, err);
        await this.abort(key, uploadId);
        return outcome;
      }
      return { created: true, size: total };
    } catch (err) {
      // Wait for parts still in flight so their buffers return to the budget, then abort.
      await Promise.allSettled([...inFlight]);
      await this.abort(key, uploadId);
      throw err;
    }
  }

  private async abort(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.o.bucket, Key: key, UploadId: uploadId }),
      );
    } catch (err) {
      // A leftover upload costs storage until the bucket's lifecycle rule or
      // the cleaner removes it; it never becomes an object.
      this.o.logger.warn(
        { key, uploadId, err: describe(err) },
        'could not abort a multipart upload',
      );
    }
  }

  /**
   * A create (PutObject or CompleteMultipartUpload) failed: 412 when the key
   * exists and the server honours If-None-Match, but also an error that
   * hides a success (a timeout after the server committed, Swift's errors
   * inside a 200 of a slow CompleteMultipartUpload). If the key now holds
   * an object, it holds this content (keys are content hashes, and only
   * verified content is created), so the upload is done; otherwise the
   * error stands.
   */
  private async afterFailedCreate(key: string, err: unknown): Promise<PutResult> {
    const existing = await this.stat(key).catch(() => null);
    if (existing) return { created: false, size: existing.size };
    if (statusOf(err) === 412) {
      throw backendUnavailable('storage', `${key} was reported to exist but is not there`, err);
    }
    throw err;
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<BlobReader | null> {
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.o.bucket, Key: key }),
        {
          abortSignal: options.signal,
        },
      );
      const body = out.Body as Readable | undefined;
      if (!body) throw internal(`S3 returned no body for ${key}`);
      return { body, size: out.ContentLength ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.mapError(err, `reading ${key}`);
    }
  }

  async stat(key: string, options: { signal?: AbortSignal } = {}): Promise<BlobInfo | null> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.o.bucket, Key: key }),
        {
          abortSignal: options.signal,
        },
      );
      // No date from the server: taken as new, so nothing is ever old enough to delete for it.
      return { size: out.ContentLength ?? 0, lastModified: out.LastModified ?? new Date() };
    } catch (err) {
      if (isNotFound(err)) return null;
      throw this.mapError(err, `inspecting ${key}`);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.o.bucket, Key: key }));
    } catch (err) {
      if (!isNotFound(err)) throw this.mapError(err, `deleting ${key}`);
    }
  }

  async deleteMany(keys: string[]): Promise<void> {
    if (this.caps.batchDelete === 'no') {
      for (const key of keys) await this.delete(key);
      return;
    }
    // DeleteObjects takes at most 1,000 keys.
    for (let at = 0; at < keys.length; at += 1000) {
      const batch = keys.slice(at, at + 1000);
      let out: Awaited<ReturnType<typeof deleteObjects>>;
      try {
        out = await deleteObjects(
          this.client,
          this.o.bucket,
          batch,
          this.caps.batchDelete === 'with-content-md5',
        );
      } catch (err) {
        throw this.mapError(err, `deleting ${batch.length} objects`);
      }
      // Absent keys are not an error; any other failure of any key is.
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length > 0) {
        const first = failed[0];
        throw backendUnavailable(
          'storage',
          `deleting ${failed.length} of ${batch.length} objects failed, e.g. ${first?.Key}: ${first?.Code} ${first?.Message ?? ''}`,
        );
      }
    }
  }

  async *list(options: { prefix?: string; signal?: AbortSignal } = {}): AsyncIterable<BlobListing> {
    let token: string | undefined;
    do {
      let page: ListObjectsV2CommandOutput;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.o.bucket,
            Prefix: options.prefix,
            ContinuationToken: token,
          }),
          { abortSignal: options.signal },
        );
      } catch (err) {
        throw this.mapError(err, 'listing blobs');
      }
      for (const item of page.Contents ?? []) {
        if (item.Key)
          yield {
            key: item.Key,
            size: item.Size ?? 0,
            lastModified: item.LastModified ?? new Date(),
          };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async removeStaleUploads(olderThan: Date, isOurs: (key: string) => boolean): Promise<number> {
    let removed = 0;
    for await (const upload of this.openUploads()) {
      if (upload.initiated >= olderThan || !isOurs(upload.key)) continue;
      await this.client
        .send(
          new AbortMultipartUploadCommand({
            Bucket: this.o.bucket,
            Key: upload.key,
            UploadId: upload.uploadId,
          }),
        )
        .catch((err: unknown) => {
          throw this.mapError(err, `aborting the upload of ${upload.key}`);
        });
      removed++;
    }
    return removed;
  }

  /** Starts a multipart upload and leaves it open, as a process killed mid-upload does (tests). */
  async startUpload(key: string): Promise<void> {
    await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.o.bucket, Key: key }));
  }

  /** Multipart uploads started and neither completed nor aborted (tests, the cleaner). */
  async *openUploads(
    prefix?: string,
  ): AsyncIterable<{ key: string; uploadId: string; initiated: Date }> {
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      let page: ListMultipartUploadsCommandOutput;
      try {
        page = await this.client.send(
          new ListMultipartUploadsCommand({
            Bucket: this.o.bucket,
            Prefix: prefix,
            KeyMarker: keyMarker,
            UploadIdMarker: uploadIdMarker,
          }),
        );
      } catch (err) {
        throw this.mapError(err, 'listing multipart uploads');
      }
      for (const u of page.Uploads ?? []) {
        if (u.Key && u.UploadId)
          yield { key: u.Key, uploadId: u.UploadId, initiated: u.Initiated ?? new Date() };
      }
      if (!page.IsTruncated) return;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.o.bucket }));
    } catch (err) {
      throw this.mapError(err, 'checking the bucket');
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }

  /** What the server was found to support at start-up. */
  get capabilities(): S3Capabilities {
    return this.caps;
  }

  /** Bytes of uploads held in memory right now. */
  get bufferedUploadBytes(): number {
    return this.buffers.inUse;
  }

  /**
   * S3 failures are the store being unavailable (503): unreachable, timing
   * out, 5xx, throttled, or refusing our credentials. Never "absent".
   * Our own errors (a checksum mismatch from beforeCommit, a client that went
   * away) pass through unchanged.
   */
  private mapError(err: unknown, doing: string): unknown {
    if (err instanceof AppError) return err;
    const name = (err as { name?: string }).name;
    if (name === 'AbortError') return err;
    const status = statusOf(err);
    if (
      status !== undefined &&
      status >= 400 &&
      status < 500 &&
      status !== 403 &&
      status !== 408 &&
      status !== 429
    ) {
      return internal(`S3 rejected ${doing}: ${describe(err)}`, err);
    }
    return backendUnavailable('storage', `${doing}: ${describe(err)}`, err);
  }
}

/** Fills part buffers from a stream of chunks, carrying over what does not fit. */
class PartReader {
  private carry: Buffer | null = null;
  ended = false;

  constructor(private readonly chunks: AsyncIterator<Buffer>) {}

  /** Copies bytes into `buffer` until it is full or the stream ends; returns how many. */
  async fill(buffer: Buffer): Promise<number> {
    let filled = 0;
    while (filled < buffer.length) {
      let chunk = this.carry;
      this.carry = null;
      if (!chunk) {
        const next = await this.chunks.next();
        if (next.done) {
          this.ended = true;
          break;
        }
        chunk = next.value;
      }
      const n = Math.min(chunk.length, buffer.length - filled);
      chunk.copy(buffer, filled, 0, n);
      filled += n;
      if (n < chunk.length) this.carry = chunk.subarray(n);
    }
    // A full buffer with nothing carried over may still be the end: peek, so a
    // body of exactly one part goes as a single PutObject.
    if (!this.ended && this.carry === null && filled === buffer.length) {
      const next = await this.chunks.next();
      if (next.done) this.ended = true;
      else this.carry = next.value;
    }
    return filled;
  }
}

function isNotFound(err: unknown): boolean {
  const name = (err as { name?: string }).name;
  return name === 'NoSuchKey' || name === 'NotFound' || statusOf(err) === 404;
}
