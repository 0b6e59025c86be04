import { randomBytes, type ScryptOptions, scrypt, timingSafeEqual } from 'node:crypto';

/** scrypt's cost: N = 2^logN, block size r, parallelism p. */
export interface ScryptParams {
  logN: number;
  r: number;
  p: number;
}

/**
 * 128·N·r bytes = 32 MiB of memory per check, about 100-200 ms of one core.
 * Not 16 MiB (ln=14), which would cost less time: glibc's malloc serves a
 * block up to its dynamic mmap threshold (at most 32 MiB) from the calling
 * thread's arena and keeps it after free, so every thread-pool thread that
 * ever ran a 16 MiB check kept 16 MiB resident: 64 MB more for good with
 * libuv's four threads, measured. A block above 32 MiB is always mmapped and
 * given back when the check ends. The server runs one check at a time
 * (src/auth/guard.ts) and remembers successes, so checks are rare.
 */
export const DEFAULT_SCRYPT: ScryptParams = { logN: 15, r: 8, p: 1 };

const SALT_BYTES = 16;
const KEY_BYTES = 32;

// Bounds on what a users file may ask for. Each alone is generous; the memory
// bound is the one that matters (ln=20 with r=32 would be 4 GiB) and still
// admits passlib's default (ln=16, r=8: 64 MiB).
const MAX_LOG_N = 20;
const MAX_R = 32;
const MAX_P = 16;
const MAX_MEMORY = 64 * 1024 * 1024;
// Foreign tools write other lengths; these cover them without letting a file
// ask for megabytes of derived key.
const SALT_RANGE = [8, 64] as const;
const KEY_RANGE = [16, 64] as const;

const PARAMS = /^ln=(\d{1,3}),r=(\d{1,3}),p=(\d{1,3})$/;
const B64 = /^[A-Za-z0-9+/]+$/;

interface Decoded {
  params: ScryptParams;
  salt: Buffer;
  key: Buffer;
}

/** Memory scrypt allocates for these parameters (OpenSSL's own accounting: V plus B). */
function memoryOf({ logN, r, p }: ScryptParams): number {
  return 128 * r * (2 ** logN + 2) + 128 * r * p;
}

/** Unpadded base64 → bytes, or null unless it is exactly what encoding the bytes gives back. */
function fromB64(text: string): Buffer | null {
  if (!B64.test(text)) return null;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64').replace(/=+$/, '') === text ? bytes : null;
}

const toB64 = (bytes: Buffer) => bytes.toString('base64').replace(/=+$/, '');

function decode(encoded: string): Decoded | string {
  const parts = encoded.split('$');
  if (parts.length !== 5 || parts[0] !== '' || parts[1] !== 'scrypt') return 'not a $scrypt$ hash';
  const m = PARAMS.exec(parts[2] ?? '');
  if (!m) return 'parameters must read ln=N,r=N,p=N';
  const params = { logN: Number(m[1]), r: Number(m[2]), p: Number(m[3]) };
  if (params.logN < 1 || params.logN > MAX_LOG_N) return `ln must be 1..${MAX_LOG_N}`;
  if (params.r < 1 || params.r > MAX_R) return `r must be 1..${MAX_R}`;
  if (params.p < 1 || params.p > MAX_P) return `p must be 1..${MAX_P}`;
  if (128 * 2 ** params.logN * params.r > MAX_MEMORY) {
    return `ln and r need more than ${MAX_MEMORY / 1024 / 1024} MiB of memory (128·2^ln·r bytes)`;
  }
  const salt = fromB64(parts[3] ?? '');
  if (!salt) return 'salt is not unpadded base64';
  if (salt.length < SALT_RANGE[0] || salt.length > SALT_RANGE[1]) {
    return `salt must be ${SALT_RANGE[0]} to ${SALT_RANGE[1]} bytes`;
  }
  const key = fromB64(parts[4] ?? '');
  if (!key) return 'key is not unpadded base64';
  if (key.length < KEY_RANGE[0] || key.length > KEY_RANGE[1]) {
    return `key must be ${KEY_RANGE[0]} to ${KEY_RANGE[1]} bytes`;
  }
  return { params, salt, key };
}

/** null when `encoded` is a usable hash, else a short reason (which never quotes the hash). */
export function hashFormatProblem(encoded: string): string | null {
  const decoded = decode(encoded);
  return typeof decoded === 'string' ? decoded : null;
}

function derive(
  password: string,
  salt: Buffer,
  length: number,
  params: ScryptParams,
): Promise<Buffer> {
  const options: ScryptOptions = {
    N: 2 ** params.logN,
    r: params.r,
    p: params.p,
    // Node's default ceiling (32 MiB) would refuse some hashes the bounds
    // admit; a little over the exact need leaves room for OpenSSL's rounding.
    maxmem: memoryOf(params) + 1024 * 1024,
  };
  return new Promise((resolve, reject) => {
    scrypt(Buffer.from(password, 'utf8'), salt, length, options, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

/** A PHC string as passlib writes scrypt: `$scrypt$ln=15,r=8,p=1$<salt>$<key>`. */
export async function hashPassword(
  password: string,
  params: ScryptParams = DEFAULT_SCRYPT,
): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const key = await derive(password, salt, KEY_BYTES, params);
  return `$scrypt$${paramsText(params)}$${toB64(salt)}$${toB64(key)}`;
}

const paramsText = (p: ScryptParams) => `ln=${p.logN},r=${p.r},p=${p.p}`;

/** Whether `password` is the one `encoded` was made from; false for a malformed hash. */
export async function verifyPassword(password: string, encoded: string): Promise<boolean> {
  const decoded = decode(encoded);
  if (typeof decoded === 'string') return false;
  const key = await derive(password, decoded.salt, decoded.key.length, decoded.params);
  return timingSafeEqual(key, decoded.key);
}

/**
 * A well-formed hash of no password: checking against it costs what checking
 * a real DEFAULT_SCRYPT hash costs, and its random key matches nothing, so it
 * needs no scrypt run to make.
 */
export function unmatchableHash(params: ScryptParams = DEFAULT_SCRYPT): string {
  return `$scrypt$${paramsText(params)}$${toB64(randomBytes(SALT_BYTES))}$${toB64(randomBytes(KEY_BYTES))}`;
}
