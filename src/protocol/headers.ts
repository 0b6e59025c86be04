import type { IncomingHttpHeaders } from 'node:http';
import Negotiator from 'negotiator';
import { SHA256_HEX } from '../dedup/keys.js';
import type { BodyEncoding, ContentHints } from '../dedup/upload-check.js';
import { invalidHeader, invalidVersion, missingVersion } from '../errors.js';
import { parseVersion } from './versions.js';

function single(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** SPEC §2: `Content-Encoding: gzip` (any case) means gzip; anything else is raw bytes. */
export function bodyEncoding(headers: IncomingHttpHeaders): BodyEncoding {
  const value = single(headers['content-encoding'])?.trim().toLowerCase();
  return value === 'gzip' || value === 'x-gzip' ? 'gzip' : 'identity';
}

export function contentHints(headers: IncomingHttpHeaders): ContentHints {
  const hints: ContentHints = {};
  const checksum = single(headers['sha256-checksum'])?.trim();
  if (checksum !== undefined) {
    const hex = checksum.toLowerCase();
    if (!SHA256_HEX.test(hex))
      throw invalidHeader('SHA256-Checksum', 'expected 64 hexadecimal digits');
    hints.sha256 = hex;
  }
  const size = single(headers['logical-size'])?.trim();
  if (size !== undefined) {
    const n = /^\d{1,16}$/.test(size) ? Number(size) : Number.NaN;
    if (!Number.isSafeInteger(n)) throw invalidHeader('Logical-Size', 'expected a byte count');
    hints.logicalSize = n;
  }
  return hints;
}

export function declaredLength(headers: IncomingHttpHeaders): number | undefined {
  const value = headers['content-length'];
  return value === undefined ? undefined : Number(value);
}

/**
 * Serve the stored gzip bytes unless the client explicitly refuses gzip
 * (`identity` only, `gzip;q=0`, ...). No Accept-Encoding at all means any
 * coding is acceptable (RFC 9110 §12.5.3).
 */
export function acceptsGzip(headers: IncomingHttpHeaders): boolean {
  if (headers['accept-encoding'] === undefined) return true;
  return new Negotiator({ headers }).encodings(['gzip']).includes('gzip');
}

/**
 * The version of a PUT/DELETE (required) or the cutoff of a list (optional):
 * the `last_modified` query parameter, else the `Last-Modified` header.
 */
export function requestVersion(
  query: URLSearchParams,
  headers: IncomingHttpHeaders,
  required: true,
): number;
export function requestVersion(
  query: URLSearchParams,
  headers: IncomingHttpHeaders,
  required: false,
): number | undefined;
export function requestVersion(
  query: URLSearchParams,
  headers: IncomingHttpHeaders,
  required: boolean,
): number | undefined {
  const text = query.get('last_modified') ?? single(headers['last-modified']);
  if (text === undefined || text === null) {
    if (required) throw missingVersion();
    return undefined;
  }
  const version = parseVersion(text);
  if (version === null) throw invalidVersion(text);
  return version;
}
