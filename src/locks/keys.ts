import { createHash } from 'node:crypto';

/**
 * The PostgreSQL advisory-lock key of a lock name: the first 8 bytes of
 * SHA-256("s3dedup:" + name), read as a big-endian signed 64-bit integer
 * (PostgreSQL's bigint), returned as a decimal string.
 *
 * This derivation is part of the deployment contract and must never change:
 * during a rolling upgrade old and new instances lock the same paths and
 * blobs, and they only exclude each other if they derive the same keys.
 * test/unit/lock-keys.test.ts pins known values.
 */
export function advisoryKey(name: string): string {
  const digest = createHash('sha256').update(`s3dedup:${name}`, 'utf8').digest();
  return digest.readBigInt64BE(0).toString();
}
