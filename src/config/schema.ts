import { isIP } from 'node:net';
import { z } from 'zod';

/**
 * Every configuration variable, with its default, its validation and a line of
 * documentation. Names are the upstream s3dedup's so existing `.env` files work;
 * the variables after "s3dedup additions" are ours. A JSON config file uses the
 * same names as keys. The README table is checked against this list by a test.
 */

type Raw = string | number | boolean;
const raw = z.union([z.string(), z.number(), z.boolean()]);

function integer(min: number, max: number) {
  return raw.transform((value, ctx) => {
    const n =
      typeof value === 'number'
        ? value
        : typeof value === 'string' && /^\s*-?\d+\s*$/.test(value)
          ? Number(value)
          : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a whole number from ${min} to ${max}`,
        input: value,
      });
      return z.NEVER;
    }
    return n;
  });
}

/** Seconds, fractions allowed (tests use sub-second timeouts). */
function seconds(min: number, max: number) {
  return raw.transform((value, ctx) => {
    const n =
      typeof value === 'number'
        ? value
        : typeof value === 'string' && value.trim() !== ''
          ? Number(value)
          : NaN;
    if (!Number.isFinite(n) || n < min || n > max) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a number of seconds from ${min} to ${max}`,
        input: value,
      });
      return z.NEVER;
    }
    return n;
  });
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);
const boolean = raw.transform((value, ctx) => {
  if (typeof value === 'boolean') return value;
  const text = String(value).trim().toLowerCase();
  if (TRUE.has(text)) return true;
  if (FALSE.has(text)) return false;
  ctx.addIssue({
    code: 'custom',
    message: 'must be true or false (also accepted: 1/0, yes/no, on/off)',
    input: value,
  });
  return z.NEVER;
});

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return raw.transform((value, ctx) => {
    const text = String(value).trim().toLowerCase();
    if ((values as readonly string[]).includes(text)) return text as T[number];
    ctx.addIssue({ code: 'custom', message: `must be one of: ${values.join(', ')}`, input: value });
    return z.NEVER;
  });
}

const text = raw.transform((value) => String(value));

/** Named ranges of proxy-addr, which Fastify's trustProxy uses. */
const PROXY_RANGES = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * "10.0.0.1, 192.168.0.0/16, loopback": each entry an IP, a CIDR range or a
 * named range; kept as the entries joined by commas, spaces removed.
 */
const proxyList = raw.transform((value, ctx) => {
  const entries = String(value)
    .split(',')
    .map((e) => e.trim())
    .filter((e) => e !== '');
  for (const entry of entries) {
    const [address = '', prefix, extra] = entry.split('/');
    const family = isIP(address);
    const max = family === 6 ? 128 : 32;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= max);
    if (!(PROXY_RANGES.has(entry) || (family !== 0 && prefixOk && extra === undefined))) {
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(entry)} is not an IP address, a CIDR range or one of ${[...PROXY_RANGES].join(', ')}`,
        input: value,
      });
      return z.NEVER;
    }
  }
  return entries.join(',');
});

function url(protocols: readonly string[]) {
  return raw.transform((value, ctx) => {
    const s = String(value).trim();
    let parsed: URL | undefined;
    try {
      parsed = new URL(s);
    } catch {
      parsed = undefined;
    }
    if (!parsed || !protocols.includes(parsed.protocol)) {
      ctx.addIssue({
        code: 'custom',
        message: `must be a URL starting with ${protocols.join(' or ')}//`,
        input: value,
      });
      return z.NEVER;
    }
    return s.replace(/\/+$/, '');
  });
}

// S3 bucket naming rules (the subset every S3-compatible server enforces).
const bucketName = raw.transform((value, ctx) => {
  const s = String(value);
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(s) || s.includes('..')) {
    ctx.addIssue({
      code: 'custom',
      message:
        'must be 3-63 characters of lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit',
      input: value,
    });
    return z.NEVER;
  }
  return s;
});

interface VariableSpec {
  schema: z.ZodType<unknown, Raw>;
  default?: Raw;
  doc: string;
}

export const VARIABLES = {
  LOG_LEVEL: {
    schema: oneOf(['trace', 'debug', 'info', 'warn', 'error'] as const),
    default: 'info',
    doc: 'trace, debug, info, warn or error',
  },
  LOG_JSON: {
    schema: boolean,
    default: false,
    doc: 'JSON log lines instead of human-readable ones',
  },
  BUCKET_NAME: {
    schema: bucketName,
    default: 'default',
    doc: 'S3 bucket; created at start-up if missing',
  },
  LISTEN_ADDRESS: { schema: text, default: '0.0.0.0', doc: 'address the HTTP server binds' },
  LISTEN_PORT: { schema: integer(0, 65535), default: 8080, doc: 'HTTP port (0 picks a free one)' },
  KVSTORAGE_TYPE: {
    schema: oneOf(['sqlite', 'postgres'] as const),
    default: 'sqlite',
    doc: 'metadata store: sqlite (one instance) or postgres',
  },
  SQLITE_PATH: {
    schema: text,
    default: './data/kv.db',
    doc: 'SQLite database file; parent folders are created',
  },
  SQLITE_MAX_CONNECTIONS: {
    schema: integer(1, 1000),
    default: 10,
    doc: 'accepted for compatibility; SQLite is used through one connection',
  },
  POSTGRES_HOST: { schema: text, doc: 'PostgreSQL host' },
  POSTGRES_PORT: { schema: integer(1, 65535), default: 5432, doc: 'PostgreSQL port' },
  POSTGRES_USER: { schema: text, doc: 'PostgreSQL user' },
  POSTGRES_PASSWORD: { schema: text, doc: 'PostgreSQL password' },
  POSTGRES_DB: { schema: text, doc: 'PostgreSQL database' },
  POSTGRES_MAX_CONNECTIONS: { schema: integer(2, 1000), default: 10, doc: 'PostgreSQL pool size' },
  POSTGRES_QUERY_TIMEOUT: {
    schema: seconds(0.1, 3600),
    default: 10,
    doc: 'seconds a PostgreSQL query may run before it fails (503)',
  },
  POSTGRES_CONNECT_TIMEOUT: {
    schema: seconds(0.1, 600),
    default: 5,
    doc: 'seconds to get a PostgreSQL connection before failing (503)',
  },
  DATABASE_URL: {
    schema: url(['postgres:', 'postgresql:']),
    doc: 'PostgreSQL connection string (instead of POSTGRES_*)',
  },
  LOCKS_TYPE: {
    schema: oneOf(['memory', 'postgres'] as const),
    default: 'memory',
    doc: 'locks: memory (one instance) or postgres (advisory locks; needed for several instances)',
  },
  STORAGE_TYPE: {
    schema: oneOf(['s3', 'filesystem'] as const),
    doc: 'blob store: s3 or filesystem; s3 when S3_ENDPOINT is set, filesystem otherwise',
  },
  STORAGE_PATH: {
    schema: text,
    default: './data/blobs',
    doc: 'blob folder of the filesystem store',
  },
  S3_ENDPOINT: { schema: url(['http:', 'https:']), doc: 'S3 endpoint URL' },
  S3_ACCESS_KEY: { schema: text, doc: 'S3 access key' },
  S3_SECRET_KEY: { schema: text, doc: 'S3 secret key' },
  S3_REGION: { schema: text, default: 'us-east-1', doc: 'S3 region' },
  S3_FORCE_PATH_STYLE: { schema: boolean, default: true, doc: 'path-style S3 URLs' },
  S3_PAYLOAD_SIGNING: {
    schema: oneOf(['auto', 'signed', 'unsigned'] as const),
    default: 'auto',
    doc: 'whether an upload signs a SHA-256 of its bytes (SigV4): auto signs over http:// but not over https://, where TLS protects them',
  },
  S3_KEY_SHARDING_DEPTH: {
    schema: integer(0, 3),
    default: 2,
    doc: 'folders of two hex digits before the hash in blob keys (ab/cd/<hash> at 2); both stores',
  },
  GZIP_LEVEL: {
    schema: integer(1, 9),
    default: 6,
    doc: 'gzip level for uploads that arrive uncompressed',
  },
  MAX_UPLOAD_SIZE: {
    schema: integer(1, Number.MAX_SAFE_INTEGER),
    default: 5368709120,
    doc: 'largest accepted upload, in uncompressed bytes',
  },
  TRUST_CLIENT_CHECKSUMS: {
    schema: boolean,
    default: false,
    doc: 'skip verifying SHA256-Checksum and Logical-Size against the body',
  },
  CLEANER_ENABLED: { schema: boolean, default: true, doc: 'run the blob cleaner in the server' },
  CLEANER_INTERVAL: {
    schema: integer(1, 31536000),
    default: 3600,
    doc: 'seconds between cleaner runs',
  },
  CLEANER_BATCH_SIZE: { schema: integer(1, 1000), default: 1000, doc: 'deletions per batch' },
  CLEANER_MAX_DELETES: {
    schema: integer(1, Number.MAX_SAFE_INTEGER),
    default: 10000,
    doc: 'deletions per run',
  },
  CLEANER_GRACE: {
    schema: integer(0, 31536000),
    default: 3600,
    doc: 'seconds an unreferenced blob is kept before the cleaner may delete it',
  },
  FILETRACKER_URL: {
    schema: url(['http:', 'https:']),
    doc: 'old Filetracker server, for live migration',
  },
  FILETRACKER_V1_DIR: { schema: text, doc: 'V1 Filetracker storage folder, for migration' },
  CACHE_DIR: {
    schema: text,
    doc: 'S3 store: a local folder for a bounded cache of hot blobs (unset: no cache)',
  },
  CACHE_MAX_BYTES: {
    schema: integer(1024 * 1024, Number.MAX_SAFE_INTEGER),
    default: 1024 * 1024 * 1024,
    doc: 'bytes the blob cache in CACHE_DIR may hold',
  },

  // s3dedup additions
  ACCESS_LOG: {
    schema: boolean,
    default: true,
    doc: 'one info line per request: method, path, status, bytes in and out, duration, request id, client address',
  },
  TRUSTED_PROXIES: {
    schema: proxyList,
    default: '',
    doc: 'addresses or CIDR ranges (comma-separated; also loopback, linklocal, uniquelocal) whose X-Forwarded-For gives the client address (access log, limit on failed logins); empty: none',
  },
  AUTH_USERS_FILE: {
    schema: text,
    doc: 'file of users (s3dedup user add) whose HTTP Basic credentials every route but /version and /health then needs; unset: no access control',
  },
  AUTH_FAILURE_LIMIT: {
    schema: integer(1, 1_000_000),
    default: 10,
    doc: 'failed logins a client address may make per minute; past it, logins that need a password check get 429 until the minute is over',
  },
  OPS_LISTEN_PORT: {
    schema: integer(0, 65535),
    doc: 'serve /metrics, /metrics/json and /ui/ on this port of OPS_LISTEN_ADDRESS, without credentials, instead of on the public port; unset: public port',
  },
  OPS_LISTEN_ADDRESS: {
    schema: text,
    default: '127.0.0.1',
    doc: 'address the OPS_LISTEN_PORT listener binds',
  },
  TEMP_DIR: {
    schema: text,
    default: './data/tmp',
    doc: 'where uploads of unknown hash spill once past SPILL_THRESHOLD (use a disk, not tmpfs)',
  },
  SPILL_THRESHOLD: {
    schema: integer(0, 1073741824),
    default: 2097152,
    doc: 'bytes of an upload kept in memory before spilling to TEMP_DIR; bodies up to this size (at most 2 MiB) are checked in one buffer',
  },
  LOCK_TIMEOUT: {
    schema: seconds(0.001, 3600),
    default: 30,
    doc: 'seconds a request waits for a lock (on a path, a content, or an SQLite database another process holds) before answering 503',
  },
  CLIENT_IDLE_TIMEOUT: {
    schema: seconds(1, 86400),
    default: 120,
    doc: 'seconds a client may stay silent mid-upload or mid-download before it is closed (waits on S3/PostgreSQL do not count)',
  },
  S3_PART_SIZE: {
    schema: integer(5 * 1024 * 1024, 5 * 1024 * 1024 * 1024),
    default: 8 * 1024 * 1024,
    doc: 'bytes per multipart part (raised automatically if MAX_UPLOAD_SIZE needs more than 10,000 parts)',
  },
  S3_PARTS_PER_UPLOAD: {
    schema: integer(1, 64),
    default: 2,
    doc: 'parts of one upload sent to S3 at the same time',
  },
  S3_UPLOAD_BUFFER: {
    schema: integer(5 * 1024 * 1024, Number.MAX_SAFE_INTEGER),
    default: 48 * 1024 * 1024,
    doc: 'bytes of all uploads held in memory at once; beyond it uploads wait and their clients are paused',
  },
  S3_REQUEST_TIMEOUT: {
    schema: seconds(0.1, 3600),
    default: 30,
    doc: 'seconds an S3 request may take to answer, and an S3 connection may stay silent',
  },
  S3_CONNECT_TIMEOUT: { schema: seconds(0.1, 600), default: 5, doc: 'seconds to connect to S3' },
  S3_MAX_SOCKETS: { schema: integer(1, 10000), default: 64, doc: 'connections to S3 at most' },
  STARTUP_TIMEOUT: {
    schema: seconds(0, 3600),
    default: 30,
    doc: 'seconds start-up keeps retrying a database or S3 server that is not reachable yet',
  },
  CACHE_MAX_ENTRY_BYTES: {
    schema: integer(1, Number.MAX_SAFE_INTEGER),
    default: 64 * 1024 * 1024,
    doc: 'largest stored blob the cache keeps (at most a quarter of CACHE_MAX_BYTES is used)',
  },
  SHUTDOWN_TIMEOUT: {
    schema: seconds(0, 3600),
    default: 30,
    doc: 'seconds SIGTERM waits for in-flight requests before closing connections',
  },
} as const satisfies Record<string, VariableSpec>;

export type VariableName = keyof typeof VARIABLES;
export const VARIABLE_NAMES = Object.keys(VARIABLES) as VariableName[];

type Output<K extends VariableName> = z.output<(typeof VARIABLES)[K]['schema']>;
type HasDefault<K extends VariableName> = (typeof VARIABLES)[K] extends { default: Raw }
  ? K
  : never;

/** The validated configuration: every variable by its own name. */
export type Config = { [K in VariableName as HasDefault<K>]: Output<K> } & {
  [K in Exclude<VariableName, HasDefault<VariableName>>]: Output<K> | undefined;
} & { STORAGE_TYPE: 's3' | 'filesystem' };
