import pino from 'pino';
import { S3BlobStore } from '../../src/blobstore/s3.js';
import { s3Target } from './s3.js';
import { uniqueBucket } from './server.js';

/** An S3BlobStore on a test S3 server, with small parts so multipart paths are cheap to reach. */
export function openTestS3(
  overrides: Partial<Parameters<typeof S3BlobStore.open>[0]> = {},
  s3 = s3Target(),
) {
  return S3BlobStore.open({
    endpoint: s3.endpoint,
    accessKeyId: s3.accessKey,
    secretAccessKey: s3.secretKey,
    region: 'us-east-1',
    forcePathStyle: true,
    payloadSigning: 'auto',
    bucket: uniqueBucket(),
    partSize: 5 * 1024 * 1024,
    partsPerUpload: 4,
    uploadBuffer: 64 * 1024 * 1024,
    maxObjectSize: 5 * 1024 ** 3,
    connectTimeoutMs: 2000,
    requestTimeoutMs: 10_000,
    idleTimeoutMs: 10_000,
    maxSockets: 32,
    maxAttempts: 3,
    logger: pino({ level: 'silent' }),
    ...overrides,
  });
}

/** An S3BlobStore harness for the blob-store contract suite (test/contract/blobstore.contract.ts). */
export async function s3ContractHarness(s3 = s3Target()) {
  // Unsigned upload bodies, as over HTTPS by default: the servers' own tests
  // (through the test server, plain HTTP) cover the signed ones.
  const store = await openTestS3({ payloadSigning: 'unsigned' }, s3);
  return {
    store,
    leftovers: async () => {
      const open: string[] = [];
      for await (const u of store.openUploads()) open.push(u.key);
      return open;
    },
    leaveUpload: (key: string) => store.startUpload(key),
    close: () => store.close(),
  };
}
