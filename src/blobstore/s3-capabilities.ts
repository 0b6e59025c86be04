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
export class S3UnusableError extends StartupError {}

/** Keys of the probe: outside the blob layout (ab/cd/<sha256>), so no cleaner ever mistakes them for blobs. */
const PROBE_PREFIX = '.s3dedup-probe/';

/**
 * Tries, on a few keys under a prefix of its own that it removes again,
 * every request the store uses: plain ones (PutObject, GetObject of the same
 * bytes, HeadObject, ListObjectsV2, multipart upload, DeleteObject), which
 * must work, and the optional ones above, whose outcome it reports.
 */
export async function probeCapabilities(
  client: S3Client,
  bucket: string,
  endpoint: string,
): Promise<S3Capabilities> {
  const prefix = `${PROBE_PREFIX}${randomUUID()}/`;
  const key = (name: string) => `${prefix}${name}`;
  const step = async <T>(what: string, run: () => Promise<T>): Promise<T> => {
    try {
      return await run();
    } catch (err) {
      throw new S3UnusableError(
        `S3 at ${endpoint} cannot be used for bucket "${bucket}": ${what} failed (${describeError(err)})`,
      );
    }
  };
  const bytes = Buffer.from('s3dedup capability probe\n');
  const put = (name: string, ifNoneMatch?: string) =>
    client.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key(name),
        Body: bytes,
        ContentLength: bytes.length,
        IfNoneMatch: ifNoneMatch,
      }),
    );

  try {
    await step('PutObject', () => put('plain'));
    const back = await step('GetObject', async () => {
      const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key('plain') }));
      const body = out.Body as { transformToByteArray(): Promise<Uint8Array> } | undefined;
      return Buffer.from((await body?.transformToByteArray()) ?? new Uint8Array());
    });
    if (!back.equals(bytes)) {
      // What some servers do with aws-chunked uploads: store the framing as data.
      throw new S3UnusableError(
        `S3 at ${endpoint} returned other bytes than were stored (${back.length} bytes for ${bytes.length})`,
      );
    }
    await step('HeadObject', () =>
      client.send(new HeadObjectCommand({ Bucket: bucket, Key: key('plain') })),
    );
    await step('multipart upload', () => multipart(client, bucket, key('multipart')));

    const conditionalPut = await conditional(
      () => put('conditional'),
      () => put('plain', '*'),
    );
    const conditionalComplete = await conditional(
      () => multipart(client, bucket, key('conditional-multipart'), '*'),
      () => multipart(client, bucket, key('plain'), '*'),
    );

    const listed = await step('ListObjectsV2', () => listKeys(client, bucket, prefix));
    const batchDelete = await tryBatchDelete(client, bucket, listed);
    // Whatever the batch left, and the check that plain deletes work.
    for (const left of await step('ListObjectsV2', () => listKeys(client, bucket, prefix))) {
      await step('DeleteObject', () =>
        client.send(new DeleteObjectCommand({ Bucket: bucket, Key: left })),
      );
    }
    return { conditionalPut, conditionalComplete, batchDelete };
  } catch (err) {
    // Best effort: the probe's own keys go away even when it fails.
    for (const left of await listKeys(client, bucket, prefix).catch(() => [])) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: left })).catch(() => {});
    }
    throw err;
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

/** One part, completed (with If-None-Match when given); an upload that fails is aborted. */
async function multipart(
  client: S3Client,
  bucket: string,
  key: string,
  ifNoneMatch?: string,
): Promise<void> {
  const created = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
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
    );
    await client.send(
      new CompleteMultipartUploadCommand({
        Bucket: bucket,
        Key: key,
        UploadId: uploadId,
        MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
        IfNoneMatch: ifNoneMatch,
      }),
    );
  } catch (err) {
    await client
      .send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }))
      .catch(() => {});
    throw err;
  }
}

async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const out = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
  return (out.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : []));
}

/** Deletes `keys` in one DeleteObjects, as the SDK sends it and then with Content-MD5. */
async function tryBatchDelete(
  client: S3Client,
  bucket: string,
  keys: string[],
): Promise<S3Capabilities['batchDelete']> {
  for (const md5 of [false, true]) {
    try {
      const out = await deleteObjects(client, bucket, keys, md5);
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
  return client.send(command);
}
