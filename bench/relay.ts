/**
 * The bench's bare relay (issue #15): the least work a server between
 * Filetracker clients and S3 can do, as a floor for s3dedup's CPU per byte.
 * A PUT's body is read whole and sent with one PutObject; a GET pipes
 * GetObject back. No content check, no metadata, no locks, no early answers:
 * it is only ever run by the bench (`bench/subjects.ts`, store `relay`).
 *
 * It uses the S3 client the way s3dedup does (keep-alive agent, checksums
 * only when required), so what differs in CPU per byte is s3dedup's own work.
 */
import { Agent, createServer } from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import { sendUnsignedPayloads } from '../src/blobstore/s3.js';

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`relay: ${name} is not set`);
  return value;
}

const bucket = env('BUCKET_NAME');
const client = new S3Client({
  endpoint: env('S3_ENDPOINT'),
  region: 'us-east-1',
  forcePathStyle: true,
  credentials: { accessKeyId: env('S3_ACCESS_KEY'), secretAccessKey: env('S3_SECRET_KEY') },
  requestChecksumCalculation: 'WHEN_REQUIRED',
  responseChecksumValidation: 'WHEN_REQUIRED',
  requestHandler: new NodeHttpHandler({
    httpAgent: new Agent({ keepAlive: true, maxSockets: 64 }),
  }),
});
// As s3dedup's S3_PAYLOAD_SIGNING=unsigned, when the bench runs s3dedup so.
if (process.env.S3_PAYLOAD_SIGNING === 'unsigned') sendUnsignedPayloads(client);

const server = createServer((req, res) => {
  const relay = async () => {
    const key = decodeURIComponent(new URL(req.url ?? '/', 'http://relay').pathname.slice(1));
    if (req.method === 'PUT') {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      await client.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length }),
      );
      res.writeHead(200, { 'content-length': 0 }).end();
      return;
    }
    const object = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    // The bench PUTs gzip bodies (the Python client's shape); they come back as stored.
    res.setHeader('content-encoding', 'gzip');
    if (object.ContentLength !== undefined) res.setHeader('content-length', object.ContentLength);
    await pipeline(object.Body as Readable, res);
  };
  relay().catch((err: unknown) => {
    if (res.headersSent) res.destroy();
    else {
      const missing = (err as { name?: string }).name === 'NoSuchKey';
      res.writeHead(missing ? 404 : 500).end(err instanceof Error ? err.message : String(err));
    }
  });
});

server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('relay: no port');
  // The line bench/services.ts waits for, as it does for s3dedup's log.
  console.log(JSON.stringify({ msg: 'listening', url: `http://127.0.0.1:${address.port}` }));
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
