import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { VARIABLE_NAMES } from '../../src/config/schema.js';
import { makeTempDir } from '../support/tmp.js';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

/** Two complete, valid, and different configurations, one value per variable. */
const A: Record<string, string | number | boolean> = {
  LOG_LEVEL: 'debug',
  LOG_JSON: true,
  BUCKET_NAME: 'bucket-a',
  LISTEN_ADDRESS: '127.0.0.1',
  LISTEN_PORT: 1111,
  KVSTORAGE_TYPE: 'postgres',
  SQLITE_PATH: '/a/kv.db',
  SQLITE_MAX_CONNECTIONS: 3,
  POSTGRES_HOST: 'host-a',
  POSTGRES_PORT: 5433,
  POSTGRES_USER: 'user-a',
  POSTGRES_PASSWORD: 'pw-a',
  POSTGRES_DB: 'db-a',
  POSTGRES_MAX_CONNECTIONS: 11,
  DATABASE_URL: 'postgres://a@host-a/db-a',
  POSTGRES_QUERY_TIMEOUT: 3,
  POSTGRES_CONNECT_TIMEOUT: 2,
  LOCKS_TYPE: 'postgres',
  STORAGE_TYPE: 's3',
  STORAGE_PATH: '/a/blobs',
  S3_ENDPOINT: 'http://s3-a:9000',
  S3_ACCESS_KEY: 'ak-a',
  S3_SECRET_KEY: 'sk-a',
  S3_REGION: 'eu-west-1',
  S3_FORCE_PATH_STYLE: false,
  S3_PAYLOAD_SIGNING: 'signed',
  S3_KEY_SHARDING_DEPTH: 1,
  GZIP_LEVEL: 2,
  MAX_UPLOAD_SIZE: 1000,
  TRUST_CLIENT_CHECKSUMS: true,
  ACCESS_LOG: false,
  TRUSTED_PROXIES: '10.0.0.0/8,loopback',
  AUTH_USERS_FILE: '/a/users',
  AUTH_FAILURE_LIMIT: 20,
  OPS_LISTEN_PORT: 9101,
  OPS_LISTEN_ADDRESS: '127.0.0.2',
  CLEANER_ENABLED: false,
  CLEANER_INTERVAL: 60,
  CLEANER_BATCH_SIZE: 10,
  CLEANER_MAX_DELETES: 100,
  CLEANER_GRACE: 30,
  FILETRACKER_URL: 'http://old-a:8000',
  FILETRACKER_V1_DIR: '/a/v1',
  CACHE_DIR: '/a/cache',
  CACHE_MAX_BYTES: 2147483648,
  TEMP_DIR: '/a/tmp',
  SPILL_THRESHOLD: 1000,
  S3_PART_SIZE: 6291456,
  S3_PARTS_PER_UPLOAD: 3,
  S3_UPLOAD_BUFFER: 33554432,
  S3_REQUEST_TIMEOUT: 12,
  S3_CONNECT_TIMEOUT: 2,
  S3_MAX_SOCKETS: 20,
  LOCK_TIMEOUT: 1,
  CLIENT_IDLE_TIMEOUT: 5,
  STARTUP_TIMEOUT: 7,
  SHUTDOWN_TIMEOUT: 3,
  CACHE_MAX_ENTRY_BYTES: 1048576,
};
const B: Record<string, string> = {
  LOG_LEVEL: 'warn',
  LOG_JSON: 'false',
  BUCKET_NAME: 'bucket-b',
  LISTEN_ADDRESS: '::1',
  LISTEN_PORT: '2222',
  KVSTORAGE_TYPE: 'sqlite',
  SQLITE_PATH: '/b/kv.db',
  SQLITE_MAX_CONNECTIONS: '4',
  POSTGRES_HOST: 'host-b',
  POSTGRES_PORT: '5434',
  POSTGRES_USER: 'user-b',
  POSTGRES_PASSWORD: 'pw-b',
  POSTGRES_DB: 'db-b',
  POSTGRES_MAX_CONNECTIONS: '12',
  DATABASE_URL: 'postgresql://b@host-b/db-b',
  POSTGRES_QUERY_TIMEOUT: '4',
  POSTGRES_CONNECT_TIMEOUT: '1.5',
  LOCKS_TYPE: 'memory',
  STORAGE_TYPE: 'filesystem',
  STORAGE_PATH: '/b/blobs',
  S3_ENDPOINT: 'https://s3-b',
  S3_ACCESS_KEY: 'ak-b',
  S3_SECRET_KEY: 'sk-b',
  S3_REGION: 'us-west-2',
  S3_FORCE_PATH_STYLE: 'true',
  S3_PAYLOAD_SIGNING: 'unsigned',
  S3_KEY_SHARDING_DEPTH: '3',
  GZIP_LEVEL: '9',
  MAX_UPLOAD_SIZE: '2000',
  TRUST_CLIENT_CHECKSUMS: 'false',
  ACCESS_LOG: 'true',
  TRUSTED_PROXIES: '192.168.1.1',
  AUTH_USERS_FILE: '/b/users',
  AUTH_FAILURE_LIMIT: '30',
  OPS_LISTEN_PORT: '9102',
  OPS_LISTEN_ADDRESS: '::1',
  CLEANER_ENABLED: 'true',
  CLEANER_INTERVAL: '120',
  CLEANER_BATCH_SIZE: '20',
  CLEANER_MAX_DELETES: '200',
  CLEANER_GRACE: '60',
  FILETRACKER_URL: 'http://old-b:8000',
  FILETRACKER_V1_DIR: '/b/v1',
  CACHE_DIR: '/b/cache',
  CACHE_MAX_BYTES: '3221225472',
  TEMP_DIR: '/b/tmp',
  SPILL_THRESHOLD: '2000',
  S3_PART_SIZE: '10485760',
  S3_PARTS_PER_UPLOAD: '5',
  S3_UPLOAD_BUFFER: '67108864',
  S3_REQUEST_TIMEOUT: '20',
  S3_CONNECT_TIMEOUT: '3',
  S3_MAX_SOCKETS: '30',
  LOCK_TIMEOUT: '2.5',
  CLIENT_IDLE_TIMEOUT: '6',
  STARTUP_TIMEOUT: '8',
  SHUTDOWN_TIMEOUT: '4',
  CACHE_MAX_ENTRY_BYTES: '2097152',
};

describe('configuration', () => {
  let dir: { path: string; remove(): Promise<void> };
  const file = (content: unknown) => {
    const path = join(dir.path, `config-${Math.random()}.json`);
    writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
    return path;
  };
  beforeAll(async () => {
    dir = await makeTempDir();
  });
  afterAll(async () => {
    await dir.remove();
  });

  it('has the documented defaults: SQLite and the filesystem store, no other service', () => {
    const c = loadConfig({ env: {} });
    expect(c).toMatchObject({
      LOG_LEVEL: 'info',
      LOG_JSON: false,
      BUCKET_NAME: 'default',
      LISTEN_ADDRESS: '0.0.0.0',
      LISTEN_PORT: 8080,
      KVSTORAGE_TYPE: 'sqlite',
      SQLITE_PATH: './data/kv.db',
      LOCKS_TYPE: 'memory',
      STORAGE_TYPE: 'filesystem',
      STORAGE_PATH: './data/blobs',
      S3_REGION: 'us-east-1',
      S3_FORCE_PATH_STYLE: true,
      S3_PAYLOAD_SIGNING: 'auto',
      S3_KEY_SHARDING_DEPTH: 2,
      GZIP_LEVEL: 6,
      MAX_UPLOAD_SIZE: 5368709120,
      TRUST_CLIENT_CHECKSUMS: false,
      CLEANER_ENABLED: true,
      CLEANER_INTERVAL: 3600,
      CLEANER_BATCH_SIZE: 1000,
      CLEANER_MAX_DELETES: 10000,
      CLEANER_GRACE: 3600,
    });
    expect(c.S3_ENDPOINT).toBeUndefined();
  });

  it('defaults STORAGE_TYPE to s3 when S3_ENDPOINT is set', () => {
    const c = loadConfig({
      env: { S3_ENDPOINT: 'http://localhost:9000', S3_ACCESS_KEY: 'a', S3_SECRET_KEY: 'b' },
    });
    expect(c.STORAGE_TYPE).toBe('s3');
  });

  it('the two sample configurations cover every variable', () => {
    expect(Object.keys(A).sort()).toEqual([...VARIABLE_NAMES].sort());
    expect(Object.keys(B).sort()).toEqual([...VARIABLE_NAMES].sort());
  });

  it('reads every variable from the file, and the environment wins for every one of them', () => {
    const fromFile = loadConfig({ file: file(A), env: {} }) as unknown as Record<string, unknown>;
    const both = loadConfig({ file: file(A), env: B }) as unknown as Record<string, unknown>;
    const fromEnv = loadConfig({ env: B }) as unknown as Record<string, unknown>;
    for (const name of VARIABLE_NAMES) {
      expect(fromFile[name], name).toEqual(A[name]);
      expect(both[name], name).toEqual(fromEnv[name]);
      expect(both[name], name).not.toEqual(fromFile[name]);
    }
  });

  it('never quotes a URL password in an error', () => {
    for (const url of [
      'ftp://bob:s3cr3t@old:9999',
      'bob:s3c@r3t@old:9999',
      'ftp://bob:s3c\nr3t@old',
    ]) {
      const err = (() => {
        try {
          loadConfig({ env: { FILETRACKER_URL: url } });
        } catch (e) {
          return e as Error;
        }
        return new Error('accepted');
      })();
      expect(err.message).toMatch(/FILETRACKER_URL/);
      expect(err.message).toContain('***@');
      expect(err.message).not.toMatch(/s3cr3t|s3c|r3t/);
    }
  });

  it('treats an empty environment variable as unset', () => {
    expect(
      loadConfig({ file: file({ LISTEN_PORT: 1234 }), env: { LISTEN_PORT: '' } }).LISTEN_PORT,
    ).toBe(1234);
  });

  it.each([
    [
      'LOG_LEVEL',
      'verbose',
      /LOG_LEVEL must be one of: trace, debug, info, warn, error \(got "verbose"\)/,
    ],
    ['LISTEN_PORT', 'eighty', /LISTEN_PORT must be a whole number from 0 to 65535/],
    ['LISTEN_PORT', '70000', /LISTEN_PORT must be a whole number from 0 to 65535/],
    ['KVSTORAGE_TYPE', 'mysql', /KVSTORAGE_TYPE must be one of: sqlite, postgres/],
    ['STORAGE_TYPE', 'disk', /STORAGE_TYPE must be one of: s3, filesystem/],
    ['LOCKS_TYPE', 'redis', /LOCKS_TYPE must be one of: memory, postgres/],
    [
      'S3_PAYLOAD_SIGNING',
      'never',
      /S3_PAYLOAD_SIGNING must be one of: auto, signed, unsigned \(got "never"\)/,
    ],
    ['S3_KEY_SHARDING_DEPTH', '4', /S3_KEY_SHARDING_DEPTH must be a whole number from 0 to 3/],
    ['GZIP_LEVEL', '0', /GZIP_LEVEL must be a whole number from 1 to 9/],
    ['CACHE_MAX_BYTES', '1000', /CACHE_MAX_BYTES must be a whole number from 1048576 to/],
    ['CACHE_MAX_BYTES', '10GB', /CACHE_MAX_BYTES must be a whole number/],
    ['CACHE_MAX_ENTRY_BYTES', '0', /CACHE_MAX_ENTRY_BYTES must be a whole number from 1 to/],
    ['MAX_UPLOAD_SIZE', '5GB', /MAX_UPLOAD_SIZE must be a whole number/],
    ['TRUST_CLIENT_CHECKSUMS', 'maybe', /TRUST_CLIENT_CHECKSUMS must be true or false/],
    ['BUCKET_NAME', 'Bad_Bucket', /BUCKET_NAME must be 3-63 characters/],
    ['S3_ENDPOINT', 'localhost:9000', /S3_ENDPOINT must be a URL starting with http: or https:/],
    [
      'DATABASE_URL',
      'mysql://x',
      /DATABASE_URL must be a URL starting with postgres: or postgresql:/,
    ],
    ['LOCK_TIMEOUT', '0', /LOCK_TIMEOUT must be a number of seconds/],
  ])('rejects %s=%s naming the variable and what is allowed', (name, value, message) => {
    const problems = problemsOf(() => loadConfig({ env: { [name]: value } }));
    expect(problems.join('\n')).toMatch(message);
  });

  it('reports every bad variable at once', () => {
    const problems = problemsOf(() => loadConfig({ env: { LISTEN_PORT: 'x', GZIP_LEVEL: '99' } }));
    expect(problems).toHaveLength(2);
  });

  it('checks variables that depend on each other', () => {
    expect(problemsOf(() => loadConfig({ env: { STORAGE_TYPE: 's3' } })).join('\n')).toMatch(
      /S3_ENDPOINT is required when STORAGE_TYPE=s3/,
    );
    expect(
      problemsOf(() => loadConfig({ env: { KVSTORAGE_TYPE: 'postgres' } })).join('\n'),
    ).toMatch(/POSTGRES_HOST \(or DATABASE_URL\) is required/);
    expect(
      problemsOf(() =>
        loadConfig({ env: { LOCKS_TYPE: 'postgres', DATABASE_URL: 'postgres://x/y' } }),
      ).join('\n'),
    ).toMatch(/LOCKS_TYPE=postgres needs KVSTORAGE_TYPE=postgres/);
  });

  it('rejects a config file that is not JSON, not an object, has unknown keys or nested values', () => {
    expect(problemsOf(() => loadConfig({ file: file('{ not json'), env: {} })).join()).toMatch(
      /config file .*JSON/,
    );
    expect(problemsOf(() => loadConfig({ file: file([1, 2]), env: {} })).join()).toMatch(
      /must be a JSON object/,
    );
    expect(
      problemsOf(() => loadConfig({ file: file({ LISTEN_PROT: 1 }), env: {} })).join(),
    ).toMatch(/unknown variable LISTEN_PROT/);
    expect(
      problemsOf(() => loadConfig({ file: file({ LISTEN_PORT: { a: 1 } }), env: {} })).join(),
    ).toMatch(/LISTEN_PORT must be a string, number or boolean/);
    expect(
      problemsOf(() => loadConfig({ file: join(dir.path, 'missing.json'), env: {} })).join(),
    ).toMatch(/ENOENT/);
  });
});

describe('TRUSTED_PROXIES', () => {
  it('takes addresses, CIDR ranges and named ranges; refuses anything else with the entry named', () => {
    const ok = loadConfig({
      env: { TRUSTED_PROXIES: '10.0.0.1, 192.168.0.0/16,::1, fd00::/8,loopback' },
    });
    expect(ok.TRUSTED_PROXIES).toBe('10.0.0.1,192.168.0.0/16,::1,fd00::/8,loopback');
    expect(loadConfig({ env: {} }).TRUSTED_PROXIES).toBe('');
    for (const bad of ['10.0.0.300', '10.0.0.0/33', 'proxy.example', '10.0.0.1/8/1', '::1/129']) {
      expect(() => loadConfig({ env: { TRUSTED_PROXIES: bad } }), bad).toThrow(
        new RegExp(`TRUSTED_PROXIES.*${bad.replace(/[.*/]/g, '\\$&').split(',')[0]}`),
      );
    }
  });
});
