/**
 * The blob key layout: `ab/cd/<sha256 hex>` at the default depth 2, where ab
 * and cd are the first hex digit pairs of the hash. Sharding keeps directory
 * sizes sane for the filesystem store and spreads S3 key prefixes. The cleaner
 * relies on this layout to tell blobs from anything else in the bucket.
 */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function blobKey(hash: string, depth: number): string {
  if (!SHA256_HEX.test(hash)) throw new Error(`not a SHA-256 hex digest: ${hash}`);
  const parts: string[] = [];
  for (let i = 0; i < depth; i++) parts.push(hash.slice(2 * i, 2 * i + 2));
  parts.push(hash);
  return parts.join('/');
}

/** The hash a key names if the key follows the layout at `depth`, else null. */
export function hashOfKey(key: string, depth: number): string | null {
  const parts = key.split('/');
  const hash = parts[parts.length - 1] ?? '';
  if (parts.length !== depth + 1 || !SHA256_HEX.test(hash)) return null;
  return blobKey(hash, depth) === key ? hash : null;
}
