import { createHash, randomUUID } from 'node:crypto';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  type DeleteObjectsCommandOutput,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { StartupError } from '../errors.js';
import { describeError, statusOf } from './s3-errors.js';

/**
 * What an S3 server does with the optional features the blob store would
 * use, found out at start-up (probeCapabilities) rather than assumed.
 * Correctness never depends on them: where one is missing the store takes
 * a path that needs only plain requests (see S3BlobStore).
 */
export interface S3Capabilities {
  /** PutObject with If-None-Match: * creates a new key and answers 412 for an existing one. */
  conditionalPut: Support;
  /** The same for CompleteMultipartUpload. */
  conditionalComplete: Support;
  /** DeleteObjects: works as the SDK sends it, wants a Content-MD5 header, or is not there. */
  batchDelete: 'yes' | 'with-content-md5' | 'no';
}

/** honoured: works as AWS documents; ignored: the header is accepted and has no effect; refused: an error. */
export type Support = 'honoured' | 'ignored' | 'refused';

/** A server that lacks something the store cannot do without; start-up stops with this message. */
export class S3UnusableError extends StartupError {
  constructor(
    message: string,
    /** The server failed (5xx) or did not answer: worth another try while start-up waits. */
    readonly transient = false,
  ) {
    super(message);
  }
}

/** 5xx (but for 501 Not Implemented), a timeout, or a connection that failed. */
function isTransient(err: unknown): boolean {
  const status = statusOf(err);
  if (status !== undefined) return status >= 500 && status !== 501;
  const { name, code } = err as { name?: string; code?: unknown };
  return name === 'TimeoutError' || (typeof code === 'string' && /^E[A-Z]+$/.test(code));
}

/** Keys of the probe: outside the blob layout (ab/cd/<sha256>), so no cleaner ever mistakes them for blobs. */
const PROBE_PREFIX = '.s3dedup-probe/';
/** Probe keys and uploads this old are leftovers of a process that died mid-probe. */
const STALE_PROBE_MS = 60 * 60 * 1000;

export interface ProbeOptions {
  endpoint: string;
  /** Per request: radosgw creates its pools on a bucket's first writes, which can take seconds. */
  requestTimeoutMs: number;
  /** Until when a server failing with 5xx or not answering is tried again. */
  deadline: number;
}

/**
 * Tries, on a few keys under a prefix of its own that it removes again,
 * every request the store uses: plain ones (PutObject, GetObject of the same
 * bytes, HeadObject of a present and an absent key, ListObjectsV2, multipart
 * upload and its abort, DeleteObject), which must work, and the optional
 * ones above, whose outcome it reports. A server that fails with 5xx or
 * does not answer is tried again until `deadline`.
 */
export async function probeCapabilities(
  client: S3Client,
  bucket: string,
  options: ProbeOptions,
): Promise<S3Capabilities> {
  await removeStaleProbes(client, bucket);
  for (let attempt = 1; ; attempt++) {
    try {
      return await probeOnce(client, bucket, options);
    } catch (err) {
      if (!(err instanceof S3UnusableError) || !err.transient || Date.now() > options.deadline)
        throw err;
      await new Promise((r) => setTimeout(r, Math.min(2000, 200 * attempt)));
    }
  }
}

async function probeOnce(
  client: S3Client,
  bucket: string,
  { endpoint, requestTimeoutMs }: ProbeOptions,
): Promise<S3Capabilities> {
  const prefix = `${PROBE_PREFIX}${randomUUID()}/`;
  const key = (name: string) => `${prefix}${name}`;
  const send = { requestTimeout: requestTimeoutMs };
  const step = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      if (err instanceof S3UnusableError) throw err;
      throw new S3UnusableError(
        `S3 at ${endpoint} cannot be used for bucket "${bucket}": ${what} failed (${describeError(err)})`,
        isTransient(err),
      );
    }
  };
  const bytes = Buffer.from('s3dedup capability probe\n');
  const names = [
    'plain',
    'target-put',
    'target-multipart',
    'multipart',
    'aborted',
    'conditional',
    'conditional-multipart',
  ];
  const put = (name: string, ifNoneMatch?: string) =>
    client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key(name),
        Body: bytes,
        ContentLength: bytes.length,
        IfNoneMatch: ifNoneMatch,
      }),
      send,
    );

  // Independent steps go together: start-up waits for the slowest, not the sum.
  try {
    await step('PutObject', () =>
      Promise.all([put('plain'), put('target-put'), put('target-multipart')]),
    );
    const [, , , , , conditionalPut, conditionalComplete] = await allInOrder([
      step('GetObject', async () => {
        const out = await client.send(
          new GetObjectCommand({ Bucket: bucket, Key: key('plain') }),
          send,
        );
        const body = out.Body as { transformToByteArray(): Promise<Uint8Array> } | undefined;
        const back = Buffer.from((await body?.transformToByteArray()) ?? new Uint8Array());
        if (!back.equals(bytes)) {
          // What some servers do with aws-chunked uploads: store the framing as data.
          throw new S3UnusableError(
            `S3 at ${endpoint} returned other bytes than were stored (${back.length} bytes for ${bytes.length})`,
          );
        }
      }),
      step('HeadObject', () =>
        client.send(new HeadObjectCommand({ Bucket: bucket, Key: key('plain') }), send),
      ),
      // The store looks before it creates where writes are not conditional: an
      // absent key must say 404 (AWS says 403 to credentials without s3:ListBucket).
      step('HeadObject of an absent key', async () => {
        try {
          await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key('absent') }), send);
        } catch (err) {
          if (statusOf(err) === 404) return;
          throw err;
        }
        throw new Error('answered 200 for a key never written');
      }),
      step('multipart upload', () => multipart(client, bucket, key('multipart'), send)),
      step('AbortMultipartUpload', () => abortedUpload(client, bucket, key('aborted'), send)),
      step('PutObject with If-None-Match', () =>
        conditional(
          () => put('conditional', '*'),
          () => put('target-put', '*'),
        ),
      ),
      step('CompleteMultipartUpload with If-None-Match', () =>
        conditional(
          () => multipart(client, bucket, key('conditional-multipart'), send, '*'),
          () => multipart(client, bucket, key('target-multipart'), send, '*'),
        ),
      ),
    ]);
    await step('ListObjectsV2', () => listKeys(client, bucket, prefix, send));
    const batchDelete = await step('DeleteObjects', () =>
      tryBatchDelete(client, bucket, names.map(key), send),
    );
    // By name, not by listing (listings may lag): whatever the batch left, and
    // the check that plain deletes work.
    await step('DeleteObject', () =>
      Promise.all(
        names.map((name) =>
          client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key(name) }), send),
        ),
      ),
    );
    return { conditionalPut, conditionalComplete, batchDelete };
  } catch (err) {
    // Best effort: the probe's own keys go away even when it fails.
    await Promise.all(
      names.map((name) =>
        client
          .send(new DeleteObjectCommand({ Bucket: bucket, Key: key(name) }), send)
          .catch(() => {}),
      ),
    );
    throw err;
  }
}

/**
 * Best effort: objects and multipart uploads under the probe prefix older
 * than an hour, left by a process that died while probing.
 */
async function removeStaleProbes(client: S3Client, bucket: string): Promise<void> {
  const before = Date.now() - STALE_PROBE_MS;
  try {
    const listed = await client.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: PROBE_PREFIX }),
    );
    for (const item of listed.Contents ?? []) {
      if (item.Key && (item.LastModified?.getTime() ?? 0) < before) {
        await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: item.Key }));
      }
    }
    const uploads = await client.send(
      new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: PROBE_PREFIX }),
    );
    for (const u of uploads.Uploads ?? []) {
      if (u.Key && u.UploadId && (u.Initiated?.getTime() ?? 0) < before) {
        await client.send(
          new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
        );
      }
    }
  } catch {
    // Leftovers cost a few bytes; they are tried again at the next start.
  }
}

/** One line for the start-up log. */
export function describeCapabilities(c: S3Capabilities): string {
  const batch = {
    yes: 'yes',
    'with-content-md5': 'yes, with Content-MD5',
    no: 'no (one request a key)',
  };
  const safe = (s: Support) =>
    s === 'honoured' ? s : `${s} (HeadObject under the commit lock instead)`;
  return (
    `conditional PutObject ${safe(c.conditionalPut)}, ` +
    `conditional CompleteMultipartUpload ${safe(c.conditionalComplete)}, ` +
    `DeleteObjects ${batch[c.batchDelete]}`
  );
}

/**
 * A conditional create is honoured when it creates a new key and refuses an
 * existing one with 412; a server that answers 412 to the new key too would
 * refuse every upload, so that counts as refused.
 */
async function conditional(
  create: () => Promise<unknown>,
  overwrite: () => Promise<unknown>,
): Promise<Support> {
  try {
    await create();
  } catch (err) {
    if (isRefusal(err) || statusOf(err) === 412) return 'refused';
    throw err;
  }
  try {
    await overwrite();
    return 'ignored';
  } catch (err) {
    if (statusOf(err) === 412) return 'honoured';
    if (isRefusal(err)) return 'refused';
    throw err;
  }
}

/** A request the server does not implement or does not accept in this form. */
function isRefusal(err: unknown): boolean {
  const status = statusOf(err);
  return status === 501 || status === 400 || status === 405;
}

type SendOptions = { requestTimeout: number };

/** One part, completed (with If-None-Match when given); an upload that fails is aborted. */
async function multipart(
  client: S3Client,
  bucket: string,
  key: string,
  send: SendOptions,
  ifNoneMatch?: string,
): Promise<void> {
  const created = await client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
    send,
  );
  const uploadId = created.UploadId;
  try {
    const part = await client.send(
      new UploadPartCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        PartNumber: 1,
        Body: Buffer.from('part'),
        ContentLength: 4,
      }),
      send,
    );
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
        IfNoneMatch: ifNoneMatch,
      }),
      send,
    );
  } catch (err) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }), send)
      .catch(() => {});
    throw err;
  }
}

/** A multipart upload started and aborted: the store aborts every upload it does not complete. */
async function abortedUpload(
  client: S3Client,
  bucket: string,
  key: string,
  send: SendOptions,
): Promise<void> {
  const created = await client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
    send,
  );
  await client.send(
    new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: created.UploadId }),
    send,
  );
}

async function listKeys(
  client: S3Client,
  bucket: string,
  prefix: string,
  send: SendOptions,
): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }), send);
  return (out.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : []));
}

/** Deletes `keys` in one DeleteObjects, as the SDK sends it and then with Content-MD5. */
async function tryBatchDelete(
  client: S3Client,
  bucket: string,
  keys: string[],
  send: SendOptions,
): Promise<S3Capabilities['batchDelete']> {
  for (const md5 of [false, true]) {
    try {
      const out = await deleteObjects(client, bucket, keys, md5, send);
      // A server that answers but deletes nothing is no batch delete at all.
      if ((out.Errors ?? []).length === 0 && (out.Deleted ?? []).length === keys.length)
        return md5 ? 'with-content-md5' : 'yes';
      return 'no';
    } catch (err) {
      if (!isRefusal(err)) throw err;
    }
  }
  return 'no';
}

/**
 * DeleteObjects, optionally with the Content-MD5 header that AWS once
 * required and some servers (OpenStack Swift's s3api) still do, while
 * current SDKs send only a CRC32 checksum.
 */
export function deleteObjects(
  client: S3Client,
  bucket: string,
  keys: string[],
  contentMd5: boolean,
  send?: SendOptions,
): Promise<DeleteObjectsCommandOutput> {
  const command = new DeleteObjectsCommand({
    Bucket: bucket,
    Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: false },
  });
  if (contentMd5) {
    command.middlewareStack.add(
      (next) => async (args) => {
        const request = args.request as { body?: unknown; headers?: Record<string, string> };
        if (typeof request.body === 'string' && request.headers) {
          request.headers['content-md5'] = createHash('md5').update(request.body).digest('base64');
        }
        return next(args);
      },
      { step: 'build', name: 's3dedupContentMd5', priority: 'low' },
    );
  }
  return client.send(command, send);
}

/**
 * Promise.all, but when several fail the error reported is the first in
 * the list's order, not in time: start-up names the same missing feature
 * every time.
 */
async function allInOrder<T extends readonly unknown[]>(
  steps: readonly [...{ [K in keyof T]: Promise<T[K]> }],
): Promise<T> {
  const settled = await Promise.allSettled(steps);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return settled.map((s) => (s as PromiseFulfilledResult<unknown>).value) as unknown as T;
}
