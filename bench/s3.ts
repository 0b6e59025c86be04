import { Agent } from 'node:http';
import {
  AbortMultipartUploadCommand,
  CreateBucketCommand,
  DeleteBucketCommand,
  ListMultipartUploadsCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { deleteAllObjects } from '../test/support/bucket.js';

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
  const deleted = await deleteAllObjects(client, bucket);
  const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  for (const u of uploads.Uploads ?? []) {
    await client.send(
      new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
    );
  }
  await client.send(new DeleteBucketCommand({ Bucket: bucket }));
  return deleted;
}
