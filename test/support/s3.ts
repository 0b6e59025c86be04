import { S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { deleteAllObjects } from './bucket.js';

/** A plain SDK client on the test radosgw, to look at the bucket behind the server's back. */
export function testS3Client(endpoint = inject('s3').endpoint): S3Client {
  const s3 = inject('s3');
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKey, secretAccessKey: s3.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * Deletes every object in `bucket`. The test cluster keeps objects in RAM
 * (memstore), so suites that store gigabytes give it back when they finish.
 */
export async function emptyBucket(bucket: string): Promise<void> {
  const client = testS3Client();
  try {
    await deleteAllObjects(client, bucket);
  } finally {
    client.destroy();
  }
}
