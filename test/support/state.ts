import { join } from 'node:path';
import type { BlobStore } from '../../src/blobstore/port.js';
import { S3BlobStore } from '../../src/blobstore/s3.js';
import { dumpMetadata } from './invariants.js';
import type { TestServer } from './server.js';
import { filesIn } from './tmp.js';

/** Everything a request could change: metadata rows and stored objects. */
export async function snapshot(srv: TestServer): Promise<string> {
  const meta = await dumpMetadata(srv.server.backends.meta);
  const objects = await listObjects(srv.server.backends.blobs);
  return JSON.stringify({ meta, objects });
}

export async function listObjects(blobs: BlobStore): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of blobs.list()) keys.push(`${item.key}:${item.size}`);
  return keys.sort();
}

/**
 * What an upload may leave behind if it is not cleaned up: spill files, the
 * filesystem store's incoming files, S3 multipart uploads never completed.
 */
export async function temporaryFiles(srv: TestServer): Promise<string[]> {
  const leftovers = await filesIn(srv.config.TEMP_DIR);
  const blobs = srv.server.backends.blobs;
  if (blobs instanceof S3BlobStore) {
    for await (const u of blobs.openUploads()) leftovers.push(`multipart upload of ${u.key}`);
  } else {
    leftovers.push(...(await filesIn(join(srv.config.STORAGE_PATH, '.incoming'))));
  }
  return leftovers;
}

/** Polls until `check` passes or `ms` elapse (server-side cleanup runs after the client is gone). */
export async function eventually(check: () => Promise<void>, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      await check();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 25));
    }
  }
}
