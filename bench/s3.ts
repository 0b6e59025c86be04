import { Agent } from 'node:http';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';

export interface S3Access {
  endpoint: string;
  accessKey: string;
  secretKey: string;
}

// The SDK warns on every start that its 2027 releases need Node 22; the
// pinned version works on Node 20 and the warning would only clutter the report.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

/**
 * A plain SDK client, configured the way an S3-compatible server needs it:
 * no aws-chunked bodies with checksum trailers (radosgw answers 411), path-style
 * URLs, keep-alive connections enough for every concurrency the bench uses.
 */
export function s3Client(access: S3Access): S3Client {
  return new S3Client({
    endpoint: access.endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: access.accessKey, secretAccessKey: access.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({
      httpAgent: new Agent({ keepAlive: true, maxSockets: 64 }),
    }),
  });
}

let buckets = 0;
/** A bucket name no other target of this run (or an earlier run on the same cluster) uses. */
export function uniqueBucket(label: string): string {
  return `bench-${label}-${process.pid.toString(36)}-${Date.now().toString(36)}-${buckets++}`;
}

export async function createBucket(client: S3Client, bucket: string): Promise<void> {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
}

/**
 * Deletes everything in `bucket` (objects and unfinished multipart uploads),
 * then the bucket. The test cluster keeps objects in RAM, so every scenario
 * gives its data back before the next one stores more.
 */
export async function dropBucket(client: S3Client, bucket: string): Promise<number> {
  let deleted = 0;
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
    const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [{ Key: o.Key }] : []));
    if (keys.length === 0) break;
    await client.send(
      new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: keys, Quiet: true } }),
    );
    deleted += keys.length;
  }
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const u of uploads.Uploads ?? []) {
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
    );
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  return deleted;
}
