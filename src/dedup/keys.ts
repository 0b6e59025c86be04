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
  // Checked in place, without splitting or rebuilding the key: the blob
  // cache asks this on every GET.
  if (key.length !== 3 * depth + 64) return null;
  const hash = key.slice(3 * depth);
  if (!SHA256_HEX.test(hash)) return null;
  for (let i = 0; i < depth; i++) {
    const at = 3 * i;
    if (key[at + 2] !== '/' || key[at] !== hash[2 * i] || key[at + 1] !== hash[2 * i + 1]) {
      return null;
    }
  }
  return hash;
}
