import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AppError, StartupError } from '../../src/errors.js';
import { OldFiletrackerServer } from '../../src/migration/old-http.js';
import { formatVersion } from '../../src/protocol/versions.js';
import { type Deployment, deployment } from '../support/deployment.js';
import { FakeFiletracker } from '../support/fake-filetracker.js';
import { digestOf, metricValue, pyClient, pyParseLastModified } from '../support/http.js';
import { runCli, type ServerProcess, startServerProcess } from '../support/process.js';
import { eventually } from '../support/state.js';

const V = 1_234_567_890;
const USER = 'ft-admin';
/** Every character that needs percent-encoding in a URL's userinfo, and some that are not ASCII. */
const PASSWORD = 'Zq9-s3cr@t:/%pässwörd x?#';
const WRONG = 'Wx7-wr0ng@pass/word';
const basicAuth = { user: USER, password: PASSWORD };

/** `url` with a user and password in it, percent-encoded as operators write them. */
function withCredentials(url: string, password = PASSWORD, user = USER): string {
  return url.replace(
    /^http:\/\//,
    `http://${encodeURIComponent(user)}:${encodeURIComponent(password)}@`,
  );
}

/** Every form the password could leak in: as given, percent-encoded (both ways), base64. */
function secretForms(password: string): string[] {
  return [
    password,
    password.slice(0, 8),
    encodeURIComponent(password),
    new URL(withCredentials('http://h', password)).password,
    Buffer.from(`${USER}:${password}`, 'utf8').toString('base64'),
    Buffer.from(password, 'utf8').toString('base64'),
  ];
}

function expectNoSecret(text: string, password = PASSWORD): void {
  for (const secret of secretForms(password)) {
    expect(text.includes(secret), `the output shows ${JSON.stringify(secret)}`).toBe(false);
  }
}

/** What an old server with the right credentials must have seen: each request with them. */
function expectAllAuthorized(old: FakeFiletracker, from = 0): void {
  const header = `Basic ${Buffer.from(`${USER}:${PASSWORD}`, 'utf8').toString('base64')}`;
  expect(old.authorizations.length).toBeGreaterThan(from);
  expect(old.authorizations.slice(from).filter((a) => a !== header)).toEqual([]);
}

/** The summary's "copied N files" / "skipped N" / "failed N" counts. */
function counts(stdout: string) {
  const count = (word: string) =>
    Number(new RegExp(`^${word}\\s+(\\d+) files`, 'm').exec(stdout)?.[1]);
  return { copied: count('copied'), skipped: count('skipped'), failed: count('failed') };
}

const shownAs = (old: FakeFiletracker) =>
  `V2 Filetracker at ${old.url.replace('http://', `http://${USER}@`)}`;
const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The old server behind HTTP Basic auth (issue #16): the client sends the
 * credentials of its URL to it and to no one else, shows the URL without
 * the password, and takes a 401/403 as a refusal, never as "absent".
 */
describe('the old Filetracker client, behind HTTP Basic auth', () => {
  const stops: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const stop of stops.reverse()) await stop();
  });
  async function fake(options: ConstructorParameters<typeof FakeFiletracker>[0] = {}) {
    const f = await new FakeFiletracker(options).start();
    stops.push(() => f.stop());
    return f;
  }
  function client(url: string) {
    const c = new OldFiletrackerServer({ url, timeoutMs: 5000 });
    stops.push(() => c.close());
    return c;
  }

  it('sends the credentials of its URL, percent-decoded, with every request; shows the URL without the password', async () => {
    const old = await fake({ basicAuth });
    old.add('a/one', Buffer.from('one'), V);
    old.add('a/two', Buffer.from('two'), V + 1);
    const c = client(`${withCredentials(old.url)}/`);
    expect(c.name).toBe(shownAs(old));
    expectNoSecret(c.name);
    await c.checkV2();
    const listed: string[] = [];
    for await (const p of c.list?.('a') ?? []) listed.push(p);
    expect(listed.sort()).toEqual(['one', 'two']);
    expect((await c.head('a/one'))?.version).toBe(V);
    const file = await c.fetch('a/two');
    expect(file?.version).toBe(V + 1);
    file?.body.resume();
    const gzip = gzipSync(Buffer.from('three'));
    await c.put('a/three', {
      version: V,
      body: gzip,
      length: gzip.length,
      logicalSize: 5,
      sha256: 'x',
    });
    expect(old.content('a/three')?.toString()).toBe('three');
    expect(await c.delete('a/one', V)).toBe('done');
    expect(await c.head('a/gone')).toBeNull();
    expectAllAuthorized(old);
  });

  it('a wrong password: a StartupError at the check, and a refusal (not "absent") for files and lists, naming the server without the password', async () => {
    const old = await fake({ basicAuth });
    old.add('f', Buffer.from('here'), V);
    const c = client(withCredentials(old.url, WRONG));
    const check = await c.checkV2().catch((e: unknown) => e);
    expect(check).toBeInstanceOf(StartupError);
    expect((check as Error).message).toMatch(
      new RegExp(
        `^${literal(shownAs(old))} refused access \\(GET /version/: HTTP 401\\): check the user and password in its URL$`,
      ),
    );
    for (const call of [
      () => c.head('f'),
      () => c.fetch('f'),
      () => c.head('absent'),
      () => c.fetch('absent'),
      () => c.delete('f', V),
      async () => {
        for await (const _ of c.list?.('') ?? []);
      },
    ]) {
      const err = await call().then(
        (v) => v,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).code).toBe('BAD_GATEWAY');
      expect((err as AppError).backend).toBe('filetracker');
      expect((err as Error).message).toMatch(
        new RegExp(`^${literal(shownAs(old))} refused access, .*: HTTP 401; check the user`),
      );
      expectNoSecret((err as Error).message, WRONG);
    }
    expect(old.files.has('f')).toBe(true);

    // No credentials at all, and a 403: the same refusal, with what to do.
    const bare = client(old.url);
    await expect(bare.checkV2()).rejects.toThrow(
      /refused access \(GET \/version\/: HTTP 401\): if it asks for a password, give it in its URL/,
    );
    const forbidding = createServer((_req, res) => {
      res.writeHead(403, { 'content-type': 'text/html' });
      res.end('<html>403 Forbidden</html>');
    });
    const url = await listen(forbidding);
    stops.push(() => close(forbidding));
    const f = client(withCredentials(url));
    await expect(f.checkV2()).rejects.toBeInstanceOf(StartupError);
    await expect(f.fetch('f')).rejects.toThrow(/refused access, reading f: HTTP 403; check/);
  });

  it('keeps the credentials on redirects to its own origin, and never sends them to another', async () => {
    // The Filetracker migration server's 307 to its fallback, another server.
    const target = await fake();
    const old = await fake({ basicAuth, redirectTo: target.url });
    target.add('moved/x', Buffer.from('moved away'), V);
    const c = client(withCredentials(old.url));
    const moved = await c.fetch('moved/x');
    expect(moved?.version).toBe(V);
    moved?.body.resume();
    expect(await c.head('moved/x')).not.toBeNull();
    expectAllAuthorized(old);
    expect(target.requests).toEqual(['GET /files/moved/x', 'HEAD /files/moved/x']);
    expect(target.authorizations).toEqual([undefined, undefined]);

    // A redirect within the old server's origin (another path there) keeps them.
    const seen: Array<[string | undefined, string | undefined]> = [];
    const gzip = gzipSync(Buffer.from('same origin'));
    const same = createServer((req, res) => {
      seen.push([req.url, req.headers.authorization]);
      if (req.url === '/files/here') {
        res.writeHead(307, { location: '/files/there' });
        res.end();
      } else if (req.url === '/files/there' && req.headers.authorization !== undefined) {
        res.writeHead(200, {
          'content-encoding': 'gzip',
          'content-length': gzip.length,
          'logical-size': 11,
          'last-modified': formatVersion(V),
        });
        res.end(gzip);
      } else {
        res.writeHead(401);
        res.end();
      }
    });
    const url = await listen(same);
    stops.push(() => close(same));
    const s = client(withCredentials(url));
    const there = await s.fetch('here');
    expect(there?.version).toBe(V);
    there?.body.resume();
    const header = `Basic ${Buffer.from(`${USER}:${PASSWORD}`, 'utf8').toString('base64')}`;
    expect(seen).toEqual([
      ['/files/here', header],
      ['/files/there', header],
    ]);
  });

  it('a URL it cannot use is refused without showing the password', () => {
    const secret = encodeURIComponent(PASSWORD);
    for (const [url, shown] of [
      [`http://${USER}:${secret}@h:99999`, /not a valid URL: http:\/\/\*\*\*@h:99999$/],
      [`${USER}:${secret}@h:9999`, /must start with http:\/\/ or https:\/\/: \*\*\*@h:9999$/],
    ] as const) {
      let err: unknown;
      try {
        new OldFiletrackerServer({ url });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(StartupError);
      expect((err as Error).message).toMatch(shown);
      expectNoSecret((err as Error).message);
    }
  });
});

/** `s3dedup migrate` from an old server behind Basic auth, its credentials in --filetracker-url. */
describe('migrate from a V2 Filetracker behind HTTP Basic auth', () => {
  let d: Deployment;
  let old: FakeFiletracker;
  let env: Record<string, string>;
  beforeAll(async () => {
    d = await deployment('embedded');
    env = { ...d.env, LOG_LEVEL: 'trace' };
    old = await new FakeFiletracker({ basicAuth }).start();
    for (let i = 0; i < 20; i++) old.add(`auth/${i}`, randomBytes(500), V + i);
  }, 60_000);
  afterAll(async () => {
    await old?.stop();
    await d?.remove();
  });
  const migrate = (password: string, ...extra: string[]) =>
    runCli(['migrate', '--filetracker-url', withCredentials(old.url, password), ...extra], env);
  const storedFiles = async () => {
    const stats = await runCli(['stats', '--json'], d.env);
    expect(stats.code, stats.output).toBe(0);
    return (JSON.parse(stats.stdout) as { files: number }).files;
  };

  it('a wrong password: fails at once naming the server, copies nothing and takes nothing as absent', async () => {
    const before = old.requests.length;
    const run = await migrate(WRONG);
    expect(run.code, run.output).toBe(1);
    expect(run.output).toContain(
      `${shownAs(old)} refused access (GET /version/: HTTP 401): check the user and password in its URL`,
    );
    expectNoSecret(run.output, WRONG);
    expect(old.requests.slice(before)).toEqual(['GET /version/']);
    expect(await storedFiles()).toBe(0);
  }, 60_000);

  it('the right one: copies every file; the password shows nowhere, even at LOG_LEVEL=trace', async () => {
    const before = old.requests.length;
    const run = await migrate(PASSWORD, '--max-concurrency', '4');
    expect(run.code, run.output).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: 20, skipped: 0, failed: 0 });
    expect(run.stdout).toContain(`from ${shownAs(old)}: 20 files listed`);
    // Named (without the password) in the log as well as in the summary.
    expect(run.output.split(shownAs(old)).length - 1).toBeGreaterThanOrEqual(2);
    expectNoSecret(run.output);
    expectAllAuthorized(old, before);
    expect(await storedFiles()).toBe(20);
    const server = await startServerProcess(d.env);
    try {
      for (const i of [0, 19]) {
        const got = await pyClient.get(server.url, `/auth/${i}`);
        expect(got.status).toBe(200);
        expect(digestOf(got.content)).toBe(digestOf(old.content(`auth/${i}`) as Buffer));
        expect(pyParseLastModified(got.headers['last-modified'])).toBe(V + i);
      }
    } finally {
      await server.stop();
    }
  }, 60_000);

  it('credentials that stop working mid-run: those files fail (never "absent"), and a rerun with the new ones copies them', async () => {
    const paths = Array.from({ length: 200 }, (_, i) => `late/${i}`);
    for (const p of paths) old.add(p, randomBytes(1000), V);
    old.delayMs = 10;
    const before = old.requests.length;
    let ended = false;
    const running = migrate(PASSWORD, '--max-concurrency', '2').finally(() => {
      ended = true;
    });
    const fetched = () =>
      old.requests.slice(before).filter((r) => r.startsWith('GET /files/late/')).length;
    while (fetched() < 30 && !ended) await new Promise((r) => setTimeout(r, 10));
    // The password changed on the proxy in front of it.
    old.basicAuth = { user: USER, password: WRONG };
    const run = await running;
    old.delayMs = 0;
    expect(run.code, run.output).toBe(1);
    const c = counts(run.stdout);
    expect(c.copied).toBeGreaterThanOrEqual(20);
    expect(c.failed).toBeGreaterThan(50);
    expect(c.copied + c.skipped + c.failed).toBe(220);
    // The files already here fail too: whether the old server has a newer version is not known.
    const reasons = run.stdout.split('\n').filter((l) => /^ {2}\S+: /.test(l));
    expect(reasons.length).toBe(c.failed);
    for (const line of reasons) {
      expect(line).toMatch(
        new RegExp(
          `^ {2}((late|auth)/\\d+): ${literal(shownAs(old))} refused access, reading \\1: HTTP 401; check the user`,
        ),
      );
    }
    expect(run.output).not.toMatch(/any more \(404\)/);
    expectNoSecret(run.output);
    expect(await storedFiles()).toBe(20 + c.copied);

    // The operator gives the new password.
    const again = await migrate(WRONG);
    expect(again.code, again.output).toBe(0);
    const late = reasons.filter((l) => l.startsWith('  late/')).length;
    expect(late).toBe(200 - c.copied);
    expect(counts(again.stdout)).toEqual({ copied: late, skipped: 220 - late, failed: 0 });
    expectNoSecret(again.output, WRONG);
    expect(await storedFiles()).toBe(220);
  }, 120_000);
});

/**
 * `s3dedup live-migrate` in front of an old server behind Basic auth: the
 * fallback of GETs and the background copy send the credentials; a wrong
 * password stops the start, and one that stops working is a 502, never a 404.
 */
describe('live migration from a V2 Filetracker behind HTTP Basic auth', () => {
  let d: Deployment;
  let server: ServerProcess | undefined;
  const olds: FakeFiletracker[] = [];
  let env: Record<string, string>;
  beforeAll(async () => {
    d = await deployment('embedded');
    env = { ...d.env, LOG_LEVEL: 'trace' };
  }, 60_000);
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });
  afterAll(async () => {
    for (const o of olds) await o.stop();
    await d?.remove();
  });
  async function fake(options: ConstructorParameters<typeof FakeFiletracker>[0] = {}) {
    const f = await new FakeFiletracker(options).start();
    olds.push(f);
    return f;
  }
  const start = async (url: string, ...args: string[]) => {
    server = await startServerProcess(env, ['live-migrate', '--filetracker-url', url, ...args]);
    return server.url;
  };
  const fallbacks = (url: string, outcome: string) =>
    metricValue(url, 's3dedup_filetracker_fallbacks_total', `{outcome="${outcome}"}`);

  it('a wrong password: refuses to start, naming the server, the password nowhere', async () => {
    const old = await fake({ basicAuth });
    old.add('x', Buffer.from('x'), V);
    const err = await startServerProcess(env, [
      'live-migrate',
      '--filetracker-url',
      withCredentials(old.url, WRONG),
    ]).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toContain(
      `${shownAs(old)} refused access (GET /version/: HTTP 401): check the user and password in its URL`,
    );
    expectNoSecret(err?.message ?? '', WRONG);
    expect(old.requests).toEqual(['GET /version/']);
  });

  it('GET and HEAD of files only the old server has are served from it; credentials that stop working are a 502, not a 404', async () => {
    const old = await fake({ basicAuth });
    const content = randomBytes(50_000);
    old.add('only/old', content, V);
    old.add('only/head', Buffer.from('head me'), V + 1);
    old.add('only/later', Buffer.from('later'), V + 2);
    const url = await start(withCredentials(old.url), '--proxy-only');
    const got = await pyClient.get(url, '/only/old');
    expect(got.status).toBe(200);
    expect(digestOf(got.content)).toBe(digestOf(content));
    expect(pyParseLastModified(got.headers['last-modified'])).toBe(V);
    const head = await pyClient.head(url, '/only/head');
    expect(head.status).toBe(200);
    expect(pyParseLastModified(head.headers['last-modified'])).toBe(V + 1);
    expect((await pyClient.put(url, '/new/one', Buffer.from('new'), V)).status).toBe(200);
    expect(old.content('new/one')?.toString()).toBe('new');
    expect((await pyClient.get(url, '/nowhere')).status).toBe(404);
    expectAllAuthorized(old);

    old.basicAuth = { user: USER, password: WRONG };
    const absent = await fallbacks(url, 'absent');
    const refused = await pyClient.get(url, '/only/later');
    expect(refused.status).toBe(502);
    expect(refused.headers['x-exception']).toContain(`${shownAs(old)} refused access`);
    expect((await pyClient.head(url, '/only/later')).status).toBe(502);
    expect((await pyClient.get(url, '/not/there/either')).status).toBe(502);
    expect(await fallbacks(url, 'absent')).toBe(absent);
    expect(await fallbacks(url, 'failed')).toBeGreaterThanOrEqual(3);

    old.basicAuth = basicAuth;
    const later = await pyClient.get(url, '/only/later');
    expect(later.status).toBe(200);
    expect(later.content.toString()).toBe('later');
    await server?.stop();
    expectNoSecret(server?.output() ?? '');
  });

  it('the background copy brings everything over with the credentials, which never follow a redirect to another server', async () => {
    const target = await fake();
    const old = await fake({ basicAuth, redirectTo: target.url });
    for (let i = 0; i < 100; i++) old.add(`bg/${i}`, randomBytes(800 + i), V + i);
    target.add('moved/x', Buffer.from('moved away'), V);
    const url = await start(withCredentials(old.url), '--max-concurrency', '4');
    const moved = await pyClient.get(url, '/moved/x');
    expect(moved.status).toBe(200);
    expect(moved.content.toString()).toBe('moved away');
    await eventually(
      async () =>
        expect(await metricValue(url, 's3dedup_migration_files_total', '{outcome="copied"}')).toBe(
          100,
        ),
      30_000,
    );
    expectAllAuthorized(old);
    expect(target.requests.length).toBeGreaterThan(0);
    expect(target.authorizations.filter((a) => a !== undefined)).toEqual([]);
    old.down = true;
    for (const i of [0, 57, 99]) {
      const got = await pyClient.get(url, `/bg/${i}`);
      expect(got.status).toBe(200);
      expect(digestOf(got.content)).toBe(digestOf(old.content(`bg/${i}`) as Buffer));
    }
    await server?.stop();
    expect(server?.output()).toContain(shownAs(old));
    expectNoSecret(server?.output() ?? '');
  }, 60_000);

  it('credentials that stop working during the background copy: those files fail, none is taken as absent, and reads bring them over once they work again', async () => {
    const old = await fake({ basicAuth });
    const paths = Array.from({ length: 150 }, (_, i) => `slow/${i}`);
    for (const p of paths) old.add(p, randomBytes(600), V);
    old.delayMs = 10;
    const url = await start(withCredentials(old.url), '--max-concurrency', '2');
    const fetched = () => old.requests.filter((r) => r.startsWith('GET /files/slow/')).length;
    while (fetched() < 20 && server?.child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 10));
    }
    old.basicAuth = { user: USER, password: WRONG };
    await eventually(
      async () => expect(server?.output()).toContain('live migration: background copy done'),
      30_000,
    );
    old.delayMs = 0;
    const outcome = (o: string) =>
      metricValue(url, 's3dedup_migration_files_total', `{outcome="${o}"}`);
    const copied = await outcome('copied');
    const failed = await outcome('failed');
    expect(copied).toBeGreaterThanOrEqual(15);
    expect(failed).toBeGreaterThan(50);
    expect(copied + failed).toBe(150);
    const logged = (server?.output() ?? '')
      .split('\n')
      .filter((l) => l.includes('could not migrate a file'))
      .map((l) => (JSON.parse(l) as { reason: string }).reason);
    expect(logged.length).toBe(failed);
    for (const reason of logged)
      expect(reason).toMatch(/refused access, reading slow\/\d+: HTTP 401/);

    old.basicAuth = basicAuth;
    for (const p of paths) {
      const got = await pyClient.get(url, `/${p}`);
      expect(got.status, p).toBe(200);
    }
    await server?.stop();
    expectNoSecret(server?.output() ?? '');
  }, 60_000);
});

function listen(server: Server): Promise<string> {
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(typeof address === 'object' && address ? `http://127.0.0.1:${address.port}` : '');
    });
  });
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
