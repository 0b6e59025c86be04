import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Deployment, deployment } from '../support/deployment.js';
import { FakeFiletracker } from '../support/fake-filetracker.js';
import { digestOf, metricValue, pyClient, pyParseLastModified } from '../support/http.js';
import { runCli, type ServerProcess, startServerProcess } from '../support/process.js';
import { eventually } from '../support/state.js';

const V = 1_234_567_890;

/** Writes files into a V1 storage folder as the V1 server left them: raw content, the version as mtime. */
async function writeV1(root: string, files: Map<string, { content: Buffer; mtime: number }>) {
  for (const [path, { content, mtime }] of files) {
    const file = join(root, 'files', path);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, content);
    // A Date, as Node takes negative seconds (before 1970) for "now".
    await utimes(file, new Date(mtime * 1000), new Date(mtime * 1000));
  }
}

/** `migrate-v1` and `live-migrate-v1` (issue #12): a V1 folder and a V1 HTTP server into s3dedup. */
describe('migration from V1', () => {
  let d: Deployment;
  let server: ServerProcess | undefined;
  const olds: FakeFiletracker[] = [];
  beforeAll(async () => {
    d = await deployment('embedded');
  });
  afterEach(async () => {
    await server?.stop();
    server = undefined;
  });
  afterAll(async () => {
    for (const o of olds) await o.stop();
    await d?.remove();
  });
  const scratch = (name: string) => join(d.env.TEMP_DIR as string, '..', name);

  async function expectServed(url: string, files: Map<string, { content: Buffer; mtime: number }>) {
    const wrong: string[] = [];
    for (const [path, { content, mtime }] of files) {
      const res = await pyClient.get(url, `/${path}`);
      const ok =
        res.status === 200 &&
        digestOf(res.content) === digestOf(content) &&
        pyParseLastModified(res.headers['last-modified']) === Math.floor(mtime) &&
        res.headers['logical-size'] === String(content.length);
      if (!ok) wrong.push(`${path}: ${res.status} ${res.headers['last-modified']}`);
    }
    expect(wrong.slice(0, 10)).toEqual([]);
  }

  it('migrate-v1 copies a V1 tree with file times as versions; unreadable entries are reported, not fatal', async () => {
    const root = scratch('v1');
    const contents = Array.from({ length: 100 }, (_, i) => randomBytes(i * 37));
    const files = new Map<string, { content: Buffer; mtime: number }>();
    for (let i = 0; i < 600; i++) {
      const path =
        i % 50 === 0 ? `zadania/żółw ${i}/test.in` : `contest${i % 3}/p${i % 11}/${i}.out`;
      // Fractions of a second are dropped: V1 versions are whole seconds.
      const mtime = i === 7 ? -1_000_000 : V + i + 0.75;
      files.set(path, { content: contents[i % 100] as Buffer, mtime });
    }
    await writeV1(root, files);
    await mkdir(join(root, 'files', 'bad'), { recursive: true });
    await symlink('/nonexistent/target', join(root, 'files', 'bad', 'dangling'));
    execFileSync('mkfifo', [join(root, 'files', 'bad', 'fifo')]);

    const run = await runCli(['migrate-v1', '--v1-directory', root], d.env);
    expect(run.code, run.output).toBe(1);
    expect(run.stdout).toMatch(/^copied\s+600 files/m);
    expect(run.stdout).toMatch(/^failed\s+2 files/m);
    expect(run.stdout).toMatch(/^ {2}bad\/dangling: .*symbolic link/m);
    expect(run.stdout).toMatch(/^ {2}bad\/fifo: .*special file/m);
    expect(run.stdout).toMatch(/store now: 600 files, 100 distinct contents/);

    server = await startServerProcess(d.env);
    await expectServed(server.url, files);
    await server.stop();
    server = undefined;

    // Rerun: nothing copied twice; once the bad entries are gone, exit 0.
    await rm(join(root, 'files', 'bad'), { recursive: true });
    const again = await runCli(['migrate-v1', '--v1-directory', root], d.env);
    expect(again.code, again.output).toBe(0);
    expect(again.stdout).toMatch(/^copied\s+0 files/m);
    expect(again.stdout).toMatch(/^skipped\s+600 files/m);
  }, 120_000);

  it('migrate-v1 of a folder that is not a V1 store says so and stores nothing', async () => {
    const run = await runCli(['migrate-v1', '--v1-directory', scratch('nowhere')], d.env);
    expect(run.code).toBe(1);
    expect(run.output).toMatch(/must name a V1 Filetracker storage folder/);
    const none = await runCli(['migrate-v1'], d.env);
    expect(none.code).toBe(2);
  });

  it('live-migrate-v1 from a folder: copies it in the background, writes go to the folder too, late files fall back', async () => {
    const root = scratch('v1-live');
    const files = new Map<string, { content: Buffer; mtime: number }>();
    for (let i = 0; i < 150; i++)
      files.set(`live/${i % 5}/${i}`, { content: randomBytes(700), mtime: V + i });
    await writeV1(root, files);
    server = await startServerProcess(d.env, ['live-migrate-v1', '--v1-directory', root]);
    const url = server.url;
    await eventually(
      async () =>
        expect(await metricValue(url, 's3dedup_migration_files_total', '{outcome="copied"}')).toBe(
          150,
        ),
      20_000,
    );
    await expectServed(url, files);

    // A file the walk has passed already: read from the folder when asked.
    const late = new Map([['late/one', { content: Buffer.from('late'), mtime: V }]]);
    await writeV1(root, late);
    await expectServed(url, late);

    // PUT: raw content in the folder, with the version as its time (before 1970 too).
    expect((await pyClient.put(url, '/live/new', Buffer.from('new content'), -86_400)).status).toBe(
      200,
    );
    expect((await readFile(join(root, 'files', 'live', 'new'))).toString()).toBe('new content');
    expect(Math.floor((await stat(join(root, 'files', 'live', 'new'))).mtimeMs / 1000)).toBe(
      -86_400,
    );
    // DELETE: gone from both.
    expect((await pyClient.delete(url, '/live/0/0', V)).status).toBe(200);
    await expect(stat(join(root, 'files', 'live', '0', '0'))).rejects.toThrow(/ENOENT/);
    expect((await pyClient.get(url, '/live/0/0')).status).toBe(404);
  }, 60_000);

  it('live-migrate-v1 from a V1 HTTP server: raw bodies and HTTP dates both ways; down is 503', async () => {
    const old = await new FakeFiletracker({ v1: true }).start();
    olds.push(old);
    old.add('h/get', Buffer.from('from the V1 server'), V);
    old.add('h/head', Buffer.from('headed'), V + 1);
    old.add('h/only-old', Buffer.from('x'), V);
    server = await startServerProcess(d.env, ['live-migrate-v1', '--filetracker-url', old.url]);
    const url = server.url;

    const got = await pyClient.get(url, '/h/get');
    expect(got.status).toBe(200);
    expect(got.content.toString()).toBe('from the V1 server');
    expect(pyParseLastModified(got.headers['last-modified'])).toBe(V);

    const head = await pyClient.head(url, '/h/head');
    expect(head.status).toBe(200);
    expect(pyParseLastModified(head.headers['last-modified'])).toBe(V + 1);
    expect(head.headers['logical-size']).toBe('6');

    expect((await pyClient.put(url, '/h/put', Buffer.from('raw on V1'), V + 9)).status).toBe(200);
    expect(old.files.get('h/put')?.stored.toString()).toBe('raw on V1');
    expect(old.files.get('h/put')?.version).toBe(V + 9);

    expect((await pyClient.delete(url, '/h/only-old', V)).status).toBe(200);
    expect(old.files.has('h/only-old')).toBe(false);

    old.down = true;
    expect((await pyClient.get(url, '/h/absent')).status).toBe(503);
    expect((await pyClient.get(url, '/h/get')).status).toBe(200);
  }, 60_000);
});
