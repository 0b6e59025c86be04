import { createHash, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Pool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/auth/password.js';
import { http, pyVersionQuery, rawHttp } from '../support/http.js';
import { runCli, runProcess, type ServerProcess, startServerProcess } from '../support/process.js';
import { RawConnection } from '../support/raw-connection.js';
import { makeTempDir } from '../support/tmp.js';

/**
 * Issue #16: access control that the unchanged Python client can use, with
 * HTTP Basic credentials written into its base URL (or found in ~/.netrc).
 * The server is the built CLI in its own process, its users managed with
 * `s3dedup user`, as an operator runs it.
 */

const WRITER = { name: 'judge', password: 'w-pass-7f3a9c' };
const READER = { name: 'worker', password: 'r-pass-c41d20' };
const VERSION = 1_700_000_000;
const MB = 1024 * 1024;

/**
 * Python-client-shaped requests with the `requests` library, as
 * filetracker's Client(remote_url=...) makes them: the base URL (credentials
 * and all) is handed to requests, which turns user:password@ into an
 * Authorization header. Prints one JSON result per operation.
 */
const PY_CLIENT = `
import gzip, hashlib, json, sys, requests
base, ops = sys.argv[1], sys.argv[2:]
q = '?last_modified=' + requests.utils.quote('Tue, 14 Nov 2023 22:13:20 GMT')
s = requests.Session()
out = []
for op in ops:
    kind, _, arg = op.partition(':')
    if kind == 'put':
        content = ('content of ' + arg + '\\n').encode() * 50
        r = s.put(base + '/files/' + arg + q, data=gzip.compress(content), headers={
            'Content-Encoding': 'gzip', 'Logical-Size': str(len(content)),
            'SHA256-Checksum': hashlib.sha256(content).hexdigest()})
    elif kind == 'get':
        r = s.get(base + '/files/' + arg)
    elif kind == 'head':
        r = s.head(base + '/files/' + arg)
    elif kind == 'list':
        r = s.get(base + '/list/' + arg)
    elif kind == 'delete':
        r = s.delete(base + '/files/' + arg + q)
    else:  # route:
        r = s.get(base + '/' + arg)
    out.append({'op': op, 'status': r.status_code, 'auth': r.headers.get('WWW-Authenticate'),
                'body': r.text if kind != 'head' else ''})
print(json.dumps(out))
`;

interface PyResult {
  op: string;
  status: number;
  auth: string | null;
  body: string;
}

async function python(base: string, ops: string[], env: Record<string, string> = {}) {
  const res = await runProcess('python3', ['-c', PY_CLIENT, base, ...ops], { env });
  if (res.code !== 0) throw new Error(`python3 failed:\n${res.output}`);
  return JSON.parse(res.stdout) as PyResult[];
}

/** `s3dedup user ...` with the password on standard input, as a script would run it. */
function userCommand(usersFile: string, args: string[], password = '') {
  return runCli(['user', ...args], { AUTH_USERS_FILE: usersFile }, `${password}\n`);
}

function withCredentials(url: string, user: { name: string; password: string }): string {
  const u = new URL(url);
  u.username = user.name;
  u.password = user.password;
  return u.toString().replace(/\/$/, '');
}

const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** A server with the users file of the tests; the ops listener carries the metrics. */
async function startWithUsers(extraEnv: Record<string, string> = {}) {
  const dir = await makeTempDir();
  const usersFile = join(dir.path, 'users');
  for (const [user, role] of [
    [WRITER, 'write'],
    [READER, 'read'],
  ] as const) {
    const added = await userCommand(usersFile, ['add', user.name, '--role', role], user.password);
    expect(added.code, added.output).toBe(0);
  }
  const server = await startServerProcess({
    STORAGE_PATH: join(dir.path, 'blobs'),
    SQLITE_PATH: join(dir.path, 'kv.db'),
    TEMP_DIR: join(dir.path, 'tmp'),
    AUTH_USERS_FILE: usersFile,
    LOG_LEVEL: 'trace',
    // The tests try wrong credentials on purpose; the limit has its own test.
    AUTH_FAILURE_LIMIT: '100000',
    ...extraEnv,
  });
  return { dir, usersFile, server };
}

/** The ops listener's URL, from the "listening" line. */
function opsUrl(server: ServerProcess): string {
  for (const line of server.output().split('\n')) {
    if (!line.startsWith('{')) continue;
    const entry = JSON.parse(line) as { msg?: string; opsUrl?: string };
    if (entry.msg === 'listening' && entry.opsUrl) return entry.opsUrl;
  }
  throw new Error(`no opsUrl in:\n${server.output()}`);
}

async function metric(base: string, name: string): Promise<number> {
  const text = (await http(`${base}/metrics`)).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('access control (AUTH_USERS_FILE)', () => {
  let ctx: Awaited<ReturnType<typeof startWithUsers>>;
  let ops: string;
  beforeAll(async () => {
    ctx = await startWithUsers({ OPS_LISTEN_PORT: '0' });
    ops = opsUrl(ctx.server);
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await ctx?.dir.remove();
  });

  it('a write user, credentials in the URL, does everything the Python client does', async () => {
    const base = withCredentials(ctx.server.url, WRITER);
    const results = await python(base, [
      'put:w/a.txt',
      'get:w/a.txt',
      'head:w/a.txt',
      'list:w',
      'delete:w/a.txt',
      'get:w/a.txt',
    ]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 404]);
    expect(results[1]?.body).toBe('content of w/a.txt\n'.repeat(50));
    expect(results[3]?.body).toBe('a.txt\n');
    // The same through /ft, where SIO2 deployments mount it.
    const ft = await python(`${base}/ft`, ['put:w/b.txt', 'get:w/b.txt']);
    expect(ft.map((r) => r.status)).toEqual([200, 200]);
  });

  it('a read user reads and lists; its PUT and DELETE get 403 and change nothing', async () => {
    const writer = withCredentials(ctx.server.url, WRITER);
    const reader = withCredentials(ctx.server.url, READER);
    expect((await python(writer, ['put:r/kept.txt']))[0]?.status).toBe(200);
    const results = await python(reader, [
      'get:r/kept.txt',
      'head:r/kept.txt',
      'list:r',
      'put:r/kept.txt',
      'put:r/new.txt',
      'delete:r/kept.txt',
    ]);
    expect(results.map((r) => r.status)).toEqual([200, 200, 200, 403, 403, 403]);
    expect(results[3]?.body).toMatch(/User worker may not upload files/);
    expect(results[5]?.body).toMatch(/User worker may not delete files/);
    // Nothing changed: the file is the writer's, and the refused new path does not exist.
    const after = await python(writer, ['get:r/kept.txt', 'get:r/new.txt', 'list:r']);
    expect(after.map((r) => r.status)).toEqual([200, 404, 200]);
    expect(after[0]?.body).toBe('content of r/kept.txt\n'.repeat(50));
    expect(after[2]?.body).toBe('kept.txt\n');
  });

  it('no or wrong credentials: 401 with WWW-Authenticate on every route but /version and /health', async () => {
    const wrong = { name: WRITER.name, password: 'not-the-password' };
    const unknown = { name: 'nobody', password: WRITER.password };
    for (const base of [
      ctx.server.url,
      withCredentials(ctx.server.url, wrong),
      withCredentials(ctx.server.url, unknown),
    ]) {
      const results = await python(base, [
        'put:x/1',
        'get:x/1',
        'head:x/1',
        'list:x',
        'delete:x/1',
        'route:ft/files/x/1',
        'route:no/such/route',
        'route:version',
        'route:ft/version',
        'route:health',
        'route:ft/health',
      ]);
      const refused = results.slice(0, 7);
      for (const r of refused) {
        expect(r.status, `${base} ${r.op}`).toBe(401);
        expect(r.auth).toBe('Basic realm="s3dedup"');
      }
      expect(results.slice(7).map((r) => r.status)).toEqual([200, 200, 200, 200]);
      expect(results[7]?.body).toBe('{"protocol_versions": [2]}');
    }
    // Credentials that are not Basic at all.
    const bearer = await http(`${ctx.server.url}/files/x/1`, {
      headers: { authorization: 'Bearer abc' },
    });
    expect(bearer.status).toBe(401);
    expect(bearer.body.toString()).toMatch(/not HTTP Basic/);
  });

  it('credentials from ~/.netrc, as requests finds them with a bare URL', async () => {
    const home = await makeTempDir();
    try {
      const host = new URL(ctx.server.url).hostname;
      await writeFile(
        join(home.path, '.netrc'),
        `machine ${host} login ${READER.name} password ${READER.password}\n`,
        { mode: 0o600 },
      );
      await python(withCredentials(ctx.server.url, WRITER), ['put:n/1']);
      const results = await python(ctx.server.url, ['get:n/1', 'put:n/2'], { HOME: home.path });
      expect(results.map((r) => r.status)).toEqual([200, 403]);
    } finally {
      await home.remove();
    }
  });

  it('operator endpoints: on the OPS_LISTEN_PORT listener without credentials, not on the public one', async () => {
    for (const path of ['/metrics', '/metrics/json', '/ui/', '/health']) {
      expect((await http(`${ops}${path}`)).status, path).toBe(200);
    }
    const asWriter = { authorization: basic(WRITER.name, WRITER.password) };
    for (const path of ['/metrics', '/metrics/json', '/ui/']) {
      expect((await http(`${ctx.server.url}${path}`, { headers: asWriter })).status, path).toBe(
        404,
      );
      expect((await http(`${ctx.server.url}${path}`)).status, path).toBe(401);
    }
  });

  it('a correct user costs one slow hash, then none: the check is remembered', async () => {
    const headers = { authorization: basic(WRITER.name, WRITER.password) };
    const first = await http(`${ctx.server.url}/list/`, { headers });
    expect(first.status).toBe(200);
    const checks = await metric(ops, 's3dedup_auth_password_checks_total');
    const hits = await metric(ops, 's3dedup_auth_cache_hits_total');
    for (let i = 0; i < 50; i++) {
      expect((await http(`${ctx.server.url}/list/`, { headers })).status).toBe(200);
    }
    expect(await metric(ops, 's3dedup_auth_password_checks_total')).toBe(checks);
    expect(await metric(ops, 's3dedup_auth_cache_hits_total')).toBe(hits + 50);
  });

  it('401 and 403 are early answers: a large body is not read into the upload, the connection stays usable', async () => {
    const conn = await RawConnection.open(ctx.server.url);
    try {
      const body = randomBytes(8 * MB);
      const sha = createHash('sha256').update(body).digest('hex');
      const put = (auth?: string) =>
        conn.exchange('PUT', `/files/early/big?${pyVersionQuery(VERSION)}`, {
          headers: { 'sha256-checksum': sha, ...(auth ? { authorization: auth } : {}) },
          body,
        });
      const anonymous = await put();
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers['www-authenticate']).toBe('Basic realm="s3dedup"');
      expect(anonymous.headers.connection).not.toBe('close');
      const reader = await put(basic(READER.name, READER.password));
      expect(reader.status).toBe(403);
      const absent = await conn.exchange('GET', '/files/early/big', {
        headers: { authorization: basic(WRITER.name, WRITER.password) },
      });
      expect(absent.status).toBe(404);
      // The same connection carries the next request.
      const version = await conn.exchange('GET', '/version');
      expect(version.status).toBe(200);
      const writer = await put(basic(WRITER.name, WRITER.password));
      expect(writer.status).toBe(200);
      expect(conn.closedByServer).toBe(false);
    } finally {
      conn.close();
    }
  });

  it('no credential in any log line at trace; the access log names the user', async () => {
    const output = ctx.server.output();
    for (const secret of [WRITER.password, READER.password, 'not-the-password']) {
      expect(output).not.toContain(secret);
    }
    for (const user of [WRITER, READER]) {
      expect(output).not.toContain(basic(user.name, user.password).slice(6));
      expect(output).not.toContain(encodeURIComponent(user.password));
    }
    const access = output
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; status: number; user?: string; url: string })
      .filter((l) => l.msg === 'access');
    expect(access.some((l) => l.user === WRITER.name && l.status === 200)).toBe(true);
    expect(access.some((l) => l.user === READER.name && l.status === 403)).toBe(true);
    // Refused logins name no user: the name may be a mistyped password.
    expect(access.filter((l) => l.status === 401).every((l) => l.user === undefined)).toBe(true);
  });
});

describe('failed logins (AUTH_FAILURE_LIMIT at its default of 10 a minute)', () => {
  let ctx: Awaited<ReturnType<typeof startWithUsers>>;
  let ops: string;
  beforeAll(async () => {
    ctx = await startWithUsers({ OPS_LISTEN_PORT: '0', AUTH_FAILURE_LIMIT: '10' });
    ops = opsUrl(ctx.server);
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await ctx?.dir.remove();
  });

  it('a spray of 10,000 failed logins from many names: limited, memory flat, correct users unaffected', async () => {
    const headers = { authorization: basic(READER.name, READER.password) };
    // A correct user seen before the spray (its check is remembered).
    expect((await http(`${ctx.server.url}/list/`, { headers })).status).toBe(200);
    const rssBefore = ctx.server.currentRss();
    const checksBefore = await metric(ops, 's3dedup_auth_password_checks_total');
    const pool = new Pool(ctx.server.url, { connections: 17 });
    const statuses = new Map<number, number>();
    let next = 0;
    let readerOk = 0;
    let readerTried = 0;
    const spray = async () => {
      while (next < 10_000) {
        const i = next++;
        const res = await pool.request({
          method: 'GET',
          path: `/files/spray/${i}`,
          headers: { authorization: basic(`user-${i}-${randomBytes(4).toString('hex')}`, 'x') },
        });
        await res.body.dump();
        statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1);
      }
    };
    // The correct user, from the same address, all through the spray.
    const reader = async () => {
      while (next < 10_000) {
        readerTried++;
        const ok = await pool.request({ method: 'GET', path: '/list/', headers });
        await ok.body.dump();
        if (ok.statusCode === 200) readerOk++;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    try {
      await Promise.all([...Array.from({ length: 16 }, spray), reader()]);
    } finally {
      await pool.close();
    }
    // Every attempt failed: 401 until the address was limited, 429 after.
    expect([...statuses.keys()].sort()).toEqual([401, 429]);
    expect((statuses.get(401) ?? 0) + (statuses.get(429) ?? 0)).toBe(10_000);
    expect(statuses.get(401)).toBeLessThanOrEqual(20);
    // The limit spares the slow hash: a few were run, not 10,000.
    expect((await metric(ops, 's3dedup_auth_password_checks_total')) - checksBefore).toBeLessThan(
      30,
    );
    expect(readerTried).toBeGreaterThan(5);
    expect(readerOk).toBe(readerTried);
    const limited = await http(`${ctx.server.url}/list/`, {
      headers: { authorization: basic('someone', 'guess') },
    });
    expect(limited.status).toBe(429);
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    expect((await http(`${ctx.server.url}/list/`, { headers })).status).toBe(200);
    const grown = (ctx.server.currentRss() - rssBefore) / MB;
    // Each hash check's scrypt memory held for good would be +32 MB or more (password.ts).
    expect(grown, `RSS grew ${grown.toFixed(1)} MB`).toBeLessThan(24);
  });
});

describe('the users file while the server runs', () => {
  let ctx: Awaited<ReturnType<typeof startWithUsers>>;
  beforeAll(async () => {
    ctx = await startWithUsers();
  });
  afterAll(async () => {
    await ctx?.server.stop();
    await ctx?.dir.remove();
  });

  it('a revoked user is refused within a second, without restart; a changed password at once', async () => {
    const headers = { authorization: basic(READER.name, READER.password) };
    expect((await http(`${ctx.server.url}/list/`, { headers })).status).toBe(200);
    const removed = await userCommand(ctx.usersFile, ['remove', READER.name]);
    expect(removed.code, removed.output).toBe(0);
    const t0 = performance.now();
    let status = 200;
    let sent = t0;
    while (status === 200 && performance.now() - t0 < 3000) {
      // When the refused request was sent: the server had dropped the user by
      // then (its answer waits for a slow check of an unknown name).
      sent = performance.now();
      status = (await http(`${ctx.server.url}/list/`, { headers })).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 20));
    }
    expect(status).toBe(401);
    expect(sent - t0).toBeLessThan(1000);

    // Added back with a new password: the old one, remembered before, no longer works.
    const readded = await userCommand(
      ctx.usersFile,
      ['add', READER.name, '--role', 'read'],
      'a-new-one',
    );
    expect(readded.code, readded.output).toBe(0);
    const fresh = { authorization: basic(READER.name, 'a-new-one') };
    const t1 = performance.now();
    while (
      (await http(`${ctx.server.url}/list/`, { headers: fresh })).status !== 200 &&
      performance.now() - t1 < 3000
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect((await http(`${ctx.server.url}/list/`, { headers: fresh })).status).toBe(200);
    expect((await http(`${ctx.server.url}/list/`, { headers })).status).toBe(401);
  });

  it('a malformed change is ignored with an error logged; the last good users still work', async () => {
    const headers = { authorization: basic(WRITER.name, WRITER.password) };
    const good = await import('node:fs/promises').then((fs) => fs.readFile(ctx.usersFile, 'utf8'));
    await writeFile(ctx.usersFile, `${good}broken line without fields\n`);
    const t0 = performance.now();
    while (!/users file/i.test(errorLines(ctx.server)) && performance.now() - t0 < 3000) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(errorLines(ctx.server)).toMatch(/line \d+/);
    expect((await http(`${ctx.server.url}/list/`, { headers })).status).toBe(200);
    await writeFile(ctx.usersFile, good);
  });

  it('operator endpoints without OPS_LISTEN_PORT: write users only', async () => {
    const auditor = { name: 'auditor', password: 'aud-pass-55e1' };
    const added = await userCommand(
      ctx.usersFile,
      ['add', auditor.name, '--role', 'read'],
      auditor.password,
    );
    expect(added.code, added.output).toBe(0);
    const writer = { authorization: basic(WRITER.name, WRITER.password) };
    const reader = { authorization: basic(auditor.name, auditor.password) };
    const t0 = performance.now();
    while (
      (await http(`${ctx.server.url}/list/`, { headers: reader })).status !== 200 &&
      performance.now() - t0 < 3000
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    for (const path of [
      '/metrics',
      '/metrics/json',
      '/ui/',
      '/ft/metrics',
      '/ft/ui/',
      '//metrics',
    ]) {
      expect((await rawHttp(ctx.server.url, path, { headers: writer })).status, path).toBe(200);
      expect((await rawHttp(ctx.server.url, path, { headers: reader })).status, path).toBe(403);
      expect((await rawHttp(ctx.server.url, path)).status, path).toBe(401);
    }
  });
});

/** Error-level (50+) lines the server logged. */
function errorLines(server: ServerProcess): string {
  return server
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{') && (JSON.parse(l) as { level: number }).level >= 50)
    .join('\n');
}

describe('start-up with a bad users file', () => {
  it('a malformed file stops start-up with a message naming the file and line', async () => {
    const dir = await makeTempDir();
    try {
      const usersFile = join(dir.path, 'users');
      const hash = await hashPassword('pw', { logN: 4, r: 8, p: 1 });
      await writeFile(usersFile, `# users\nalice:write:${hash}\nbob:admin:${hash}\n`);
      const env = {
        STORAGE_PATH: join(dir.path, 'blobs'),
        SQLITE_PATH: join(dir.path, 'kv.db'),
        TEMP_DIR: join(dir.path, 'tmp'),
        AUTH_USERS_FILE: usersFile,
      };
      const started = startServerProcess(env);
      await expect(started).rejects.toThrow(/server exited with 1/);
      const message = await started.catch((err: Error) => err.message);
      expect(message).toContain(usersFile);
      expect(message).toMatch(/line 3/);
      expect(message).not.toContain(hash);

      const missing = join(dir.path, 'nope');
      await expect(startServerProcess({ ...env, AUTH_USERS_FILE: missing })).rejects.toThrow(
        new RegExp(missing),
      );
    } finally {
      await dir.remove();
    }
  });
});
