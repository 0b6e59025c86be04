import { S3Client } from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import type { S3Service } from '../services/ceph.js';
import { deleteAllObjects } from './bucket.js';

/** The real S3 servers the global setup starts. */
export type S3Name = 's3' | 'swift';

export interface S3Target extends S3Service {
  name: S3Name;
  /** For test titles. */
  label: string;
}

const LABELS: Record<S3Name, string> = {
  s3: 'Ceph radosgw',
  swift: 'OpenStack Swift s3api',
};

/** Ceph radosgw ('s3', what most suites use) or OpenStack Swift ('swift'). */
export function s3Target(name: S3Name = 's3'): S3Target {
  return { ...inject(name), name, label: LABELS[name] };
}

/** The started S3 server that owns these credentials. */
function targetOf(accessKey: string | undefined): S3Target {
  const found = (['s3', 'swift'] as const).find((n) => inject(n).accessKey === accessKey);
  return s3Target(found ?? 's3');
}

/** A plain SDK client on a test S3 server, to look at a bucket behind the server's back. */
export function testS3Client(target = s3Target(), endpoint = target.endpoint): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId: target.accessKey, secretAccessKey: target.secretKey },
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

/**
 * Deletes every object in `bucket` of the server that `accessKey` belongs to
 * (radosgw when not given). The test Ceph keeps objects in RAM (memstore),
 * so suites that store gigabytes give it back when they finish.
 */
export async function emptyBucket(bucket: string, accessKey?: string): Promise<void> {
  const client = testS3Client(targetOf(accessKey));
  try {
    await deleteAllObjects(client, bucket);
  } finally {
    client.destroy();
  }
}
