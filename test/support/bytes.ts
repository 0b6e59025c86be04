import type { Readable } from 'node:stream';

/** All of a blob store's body, whether it came as a stream or as one Buffer. */
export async function readAll(body: Readable | Buffer): Promise<Buffer> {
  if (Buffer.isBuffer(body)) return body;
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
