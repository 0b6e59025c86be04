import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { gzip as gzipCallback, gzipSync } from 'node:zlib';

const gzip = promisify(gzipCallback);
const MiB = 1024 * 1024;

/**
 * One file as the Python Filetracker client uploads it: the content gzipped
 * at level 9 (GzipFile's default), with the SHA-256 and size of the
 * uncompressed content as hints. The direct-S3 baseline stores the same gzip
 * bytes, so both sides move exactly the same payload.
 */
export interface Payload {
  /** The request body: gzip of the content. */
  body: Buffer;
  /** SHA-256 (hex) of the uncompressed content: the SHA256-Checksum header. */
  sha256: string;
  /** Uncompressed size: the Logical-Size header. */
  logicalSize: number;
  /** SHA-256 of `body`, to check what a GET returns. */
  bodySha256: string;
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function payloadOf(content: Buffer): Promise<Payload> {
  // zlib's async API runs on the libuv thread pool: the set is built on both
  // cores while the Ceph cluster starts.
  const body = await gzip(content, { level: 9, chunkSize: 256 * 1024 });
  return { body, sha256: sha256(content), logicalSize: content.length, bodySha256: sha256(body) };
}

/**
 * Distinct small text files (what programming-contest inputs and sources
 * mostly are): a hex dump of random bytes, so every file is new content and
 * compresses about 2:1 like text does.
 */
export function smallPayloads(count: number, size: number, tag: string): Promise<Payload[]> {
  return Promise.all(
    Array.from({ length: count }, (_, i) => {
      const head = `${tag} file ${i}\n`;
      const hex = randomBytes(Math.ceil(size / 2)).toString('hex');
      return payloadOf(Buffer.from((head + hex).slice(0, size)));
    }),
  );
}

/** Distinct incompressible files: each one is really uploaded, nothing gets smaller. */
export function randomPayloads(count: number, size: number): Promise<Payload[]> {
  return Promise.all(Array.from({ length: count }, () => payloadOf(randomBytes(size))));
}

/**
 * One large file that the benchmark never holds in memory: `blocks` copies of
 * one incompressible 1 MiB block, sent as a multi-member gzip (one member per
 * block; gunzip reads it as one stream) and generated as it is sent.
 */
export interface LargePayload {
  /** Bytes on the wire (the gzip stream). */
  length: number;
  sha256: string;
  logicalSize: number;
  bodySha256: string;
  /** A fresh stream of the gzip body. */
  stream(): Readable;
  /** The gzip body in pieces of exactly `size` bytes (the last one shorter), one at a time. */
  pieces(size: number): Generator<Buffer>;
}

export function largePayload(blocks: number): LargePayload {
  const block = randomBytes(MiB);
  const member = gzipSync(block, { level: 9 });
  const content = createHash('sha256');
  const body = createHash('sha256');
  for (let i = 0; i < blocks; i++) {
    content.update(block);
    body.update(member);
  }
  function* members(): Generator<Buffer> {
    for (let i = 0; i < blocks; i++) yield member;
  }
  return {
    length: member.length * blocks,
    sha256: content.digest('hex'),
    logicalSize: blocks * MiB,
    bodySha256: body.digest('hex'),
    // Not object mode: a byte stream, read in whatever sizes the consumer asks.
    stream: () => Readable.from(members(), { objectMode: false }),
    *pieces(size: number) {
      let parts: Buffer[] = [];
      let held = 0;
      for (const m of members()) {
        let rest = m;
        while (held + rest.length >= size) {
          const take = size - held;
          parts.push(rest.subarray(0, take));
          yield Buffer.concat(parts, size);
          rest = rest.subarray(take);
          parts = [];
          held = 0;
        }
        if (rest.length > 0) {
          parts.push(rest);
          held += rest.length;
        }
      }
      if (held > 0) yield Buffer.concat(parts, held);
    },
  };
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** Python's email.utils.formatdate(seconds): "Fri, 13 Feb 2009 23:31:30 -0000". */
export function formatDate(seconds: number): string {
  const d = new Date(seconds * 1000);
  const two = (n: number) => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${two(d.getUTCDate())} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())} -0000`;
}

/** urlencode({'last_modified': formatdate(v)}): quote_plus, so spaces become "+". */
export function versionQuery(seconds: number): string {
  return `last_modified=${encodeURIComponent(formatDate(seconds)).replace(/%20/g, '+')}`;
}

/** Headers python-requests adds to every request. */
export const REQUESTS_HEADERS = {
  'user-agent': 'python-requests/2.31.0',
  'accept-encoding': 'gzip, deflate',
  accept: '*/*',
  connection: 'keep-alive',
} as const;

/** The headers of the Python client's add_file for a gzip body. */
export function putHeaders(p: {
  sha256: string;
  logicalSize: number;
  length: number;
}): Record<string, string> {
  return {
    ...REQUESTS_HEADERS,
    'content-encoding': 'gzip',
    'sha256-checksum': p.sha256,
    'logical-size': String(p.logicalSize),
    'content-length': String(p.length),
  };
}
