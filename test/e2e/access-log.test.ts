import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type Deployment, deployment } from '../support/deployment.js';
import { http, pyClient, pyVersionQuery } from '../support/http.js';
import { type ServerProcess, startServerProcess } from '../support/process.js';
import { makeTempDir } from '../support/tmp.js';

interface AccessLine {
  msg: string;
  level: number;
  reqId: string;
  method: string;
  url: string;
  status: number;
  bytesIn: number;
  bytesOut: number;
  ms: number;
  client: string;
}

/** The access lines a server printed so far (JSON logs). */
function accessLines(server: ServerProcess): AccessLine[] {
  return server
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as AccessLine)
    .filter((l) => l.msg === 'access');
}

/** Waits for the access line of `url` (written once the answer is out). */
async function lineFor(server: ServerProcess, url: string): Promise<AccessLine> {
  for (let i = 0; i < 100; i++) {
    const line = accessLines(server).find((l) => l.url === url);
    if (line) return line;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`no access line for ${url}:\n${server.output()}`);
}

/** Access logs as operators read them (issue #13, part 3). */
describe('access log', () => {
  let server: ServerProcess | undefined;
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    await server?.stop();
    server = undefined;
    for (const c of cleanups.splice(0)) await c();
  });
  async function start(env: Record<string, string> = {}) {
    const dir = await makeTempDir();
    cleanups.push(() => dir.remove());
    server = await startServerProcess({
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
      ...env,
    });
    return server;
  }

  it('one info line per request: a PUT, a refused PUT, a GET, with bytes, duration, request id and client', async () => {
    const s = await start();
    const content = randomBytes(200_000);
    const put = await pyClient.put(s.url, '/al/ok', content, 1_234_567_890);
    expect(put.status).toBe(200);
    const ok = await lineFor(s, `/files/al/ok?${pyVersionQuery(1_234_567_890)}`);
    expect(ok).toMatchObject({ level: 30, method: 'PUT', status: 200, client: '127.0.0.1' });
    // The gzip body of incompressible content is a little over its size.
    expect(ok.bytesIn).toBeGreaterThan(200_000);
    expect(ok.bytesOut).toBeGreaterThan(0);
    expect(ok.ms).toBeGreaterThan(0);
    expect(ok.reqId).toBe(put.headers['x-request-id']);

    const refused = await http(`${s.url}/files/al/bad?${pyVersionQuery(1)}`, {
      method: 'PUT',
      headers: { 'sha256-checksum': 'f'.repeat(64) },
      body: content,
    });
    expect(refused.status).toBe(400);
    const bad = await lineFor(s, `/files/al/bad?${pyVersionQuery(1)}`);
    expect(bad).toMatchObject({ method: 'PUT', status: 400 });
    expect(bad.bytesIn).toBeGreaterThanOrEqual(200_000);

    const got = await pyClient.get(s.url, '/al/ok');
    const get = await lineFor(s, '/files/al/ok');
    expect(get).toMatchObject({ method: 'GET', status: 200 });
    expect(get.bytesOut).toBeGreaterThanOrEqual(got.body.length);
    expect(get.bytesIn).toBeLessThan(1000);
    // Each request's bytes, not the connection's running total.
    expect(new Set(accessLines(s).map((l) => l.reqId)).size).toBe(accessLines(s).length);
  });

  it('X-Forwarded-For is honoured only from TRUSTED_PROXIES; a request id from the proxy is kept', async () => {
    let s = await start();
    await http(`${s.url}/files/al/x`, {
      headers: { 'x-forwarded-for': '203.0.113.7', 'x-request-id': 'lb-42' },
    });
    expect(await lineFor(s, '/files/al/x')).toMatchObject({
      client: '127.0.0.1',
      status: 404,
      reqId: 'lb-42',
    });
    await s.stop();
    s = await start({ TRUSTED_PROXIES: '127.0.0.1' });
    await http(`${s.url}/files/al/y`, {
      headers: { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' },
    });
    // The address the trusted proxy saw connect: the last one it added.
    expect((await lineFor(s, '/files/al/y')).client).toBe('203.0.113.7');
  });

  it('ACCESS_LOG=false: no access lines', async () => {
    const s = await start({ ACCESS_LOG: 'false' });
    expect((await http(`${s.url}/files/al/none`)).status).toBe(404);
    expect((await http(`${s.url}/version`)).status).toBe(200);
    expect(accessLines(s)).toEqual([]);
  });
});

/** No secret in any log line, at the most verbose level, on the production shape (issue #13). */
describe('secrets in logs', () => {
  let d: Deployment | undefined;
  afterEach(async () => {
    await d?.remove();
  });

  it('at trace, through start, traffic, failures and shutdown: no S3 key, no database URL or password', async () => {
    d = await deployment('production');
    const url = new URL(d.env.DATABASE_URL as string);
    url.password = 'pw-never-logged-7f3a';
    const env: Record<string, string> = {
      ...d.env,
      DATABASE_URL: url.toString(),
      LOG_LEVEL: 'trace',
    };
    const server = await startServerProcess(env);
    try {
      expect((await pyClient.put(server.url, '/s/a', Buffer.from('secret test'), 1)).status).toBe(
        200,
      );
      expect((await pyClient.get(server.url, '/s/a')).status).toBe(200);
      expect((await pyClient.get(server.url, '/s/absent')).status).toBe(404);
      const refused = await http(`${server.url}/files/s/b?${pyVersionQuery(1)}`, {
        method: 'PUT',
        headers: { 'sha256-checksum': 'nope' },
        body: 'x',
      });
      expect(refused.status).toBe(400);
      await http(`${server.url}/health`);
      await http(`${server.url}/metrics`);
    } finally {
      await server.stop();
    }
    // A start that fails on the database logs its error, not its URL.
    const closed = new URL(url);
    closed.port = '9';
    const failed = await startServerProcess({
      ...env,
      DATABASE_URL: closed.toString(),
      STARTUP_TIMEOUT: '2',
    }).then(
      (s) => s.stop().then(() => ''),
      (err: Error) => err.message,
    );
    expect(failed).toMatch(/exited/);
    const output = server.output() + failed;
    expect(output).toMatch(/"msg":"access"/);
    for (const secret of [
      env.S3_SECRET_KEY,
      env.S3_ACCESS_KEY,
      env.DATABASE_URL,
      closed.toString(),
      'pw-never-logged-7f3a',
    ]) {
      expect(output.includes(secret as string), `${secret} in the logs`).toBe(false);
    }
  }, 60_000);
});
