import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { deleteObjects } from '../../src/blobstore/s3-capabilities.js';

/**
 * Deletes every object in `bucket`, a page of 1,000 at a time; returns how
 * many. With Content-MD5, which every S3 server tested takes and OpenStack
 * Swift requires. No vitest here: the benchmark uses it too.
 */
export async function deleteAllObjects(client: S3Client, bucket: string): Promise<number> {
  let deleted = 0;
  for (;;) {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 1000 }));
    const keys = (page.Contents ?? []).flatMap((o) => (o.Key ? [o.Key] : []));
    if (keys.length === 0) return deleted;
    await deleteObjects(client, bucket, keys, true);
    deleted += keys.length;
  }
}
