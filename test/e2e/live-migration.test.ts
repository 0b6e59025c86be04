import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Deployment, deployment } from '../support/deployment.js';
import { FakeFiletracker } from '../support/fake-filetracker.js';
import { digestOf, http, metricValue, pyClient, pyParseLastModified } from '../support/http.js';
import { type ServerProcess, startServerProcess } from '../support/process.js';
import { eventually } from '../support/state.js';

const V = 1_234_567_890;

async function list(url: string, dir: string): Promise<string[]> {
  const res = await http(`${url}/list/${dir}`);
  expect(res.status, res.body.toString()).toBe(200);
  return res.body.toString().split('\n').filter(Boolean);
}

/**
 * `s3dedup live-migrate` (issue #12) in front of the fake V2 Filetracker:
 * every rule of SPEC §7's live mode, as the Python client sees it.
 */
describe.each(['embedded', 'production'] as const)('live migration from V2 (%s)', (kind) => {
  let d: Deployment;
  let old: FakeFiletracker;
  let server: ServerProcess;
  let n = 0;
  /** A fresh path per use, so the tests do not see each other's files. */
  const fresh = (name = 'f') => `t${++n}/${name}`;
  beforeAll(async () => {
    d = await deployment(kind);
    old = await new FakeFiletracker().start();
    server = await startServerProcess(d.env, [
      'live-migrate',
      '--filetracker-url',
      old.url,
      '--proxy-only',
    ]);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await old?.stop();
    await d?.remove();
  });
  afterEach(() => {
    old.down = false;
    old.heal();
  });

  it('GET of a file only the old server has: served from it with its version, and copied in', async () => {
    const path = fresh();
    const content = randomBytes(100_000);
    old.add(path, content, V);
    const res = await pyClient.get(server.url, `/${path}`);
    expect(res.status).toBe(200);
    expect(digestOf(res.content)).toBe(digestOf(content));
    expect(pyParseLastModified(res.headers['last-modified'])).toBe(V);
    expect(res.headers['logical-size']).toBe('100000');
    // Here now: served without the old server.
    old.files.delete(path);
    const again = await pyClient.get(server.url, `/${path}`);
    expect(again.status).toBe(200);
    expect(digestOf(again.content)).toBe(digestOf(content));
    expect(
      await metricValue(server.url, 's3dedup_filetracker_fallbacks_total', '{outcome="found"}'),
    ).toBeGreaterThanOrEqual(1);
  });

  it("HEAD of a file only the old server has answers with the old server's headers, and copies it in", async () => {
    const path = fresh('ąę.txt');
    const content = Buffer.from('x'.repeat(5000));
    old.add(path, content, V + 1);
    const stored = old.files.get(path)?.stored as Buffer;
    const found = () =>
      metricValue(server.url, 's3dedup_filetracker_fallbacks_total', '{outcome="found"}');
    const before = await found();
    const res = await pyClient.head(server.url, `/${path}`);
    expect(res.status).toBe(200);
    expect(pyParseLastModified(res.headers['last-modified'])).toBe(V + 1);
    expect(res.headers['logical-size']).toBe('5000');
    expect(res.headers['content-length']).toBe(String(stored.length));
    // The copy behind the answer is done once counted.
    await eventually(async () => expect(await found()).toBe(before + 1), 10_000);
    old.down = true;
    const here = await pyClient.get(server.url, `/${path}`);
    expect(here.status).toBe(200);
    expect(here.content.toString()).toBe(content.toString());
  });

  it('GET and HEAD of a file neither has: 404', async () => {
    const path = fresh();
    expect((await pyClient.get(server.url, `/${path}`)).status).toBe(404);
    expect((await pyClient.head(server.url, `/${path}`)).status).toBe(404);
  });

  it('PUT goes to both; an older version than the old server holds changes nothing anywhere', async () => {
    const path = fresh();
    const content = randomBytes(30_000);
    const put = await pyClient.put(server.url, `/${path}`, content, V);
    expect(put.status).toBe(200);
    expect(digestOf(old.content(path) as Buffer)).toBe(digestOf(content));
    expect(old.files.get(path)?.version).toBe(V);

    // Only the old server has it, newer: it wins, as it would have there.
    const other = fresh();
    old.add(other, Buffer.from('newer, on the old server'), V + 100);
    const older = await pyClient.put(server.url, `/${other}`, Buffer.from('older'), V);
    expect(older.status).toBe(200);
    expect(pyParseLastModified(older.headers['last-modified'])).toBe(V + 100);
    old.down = true;
    const got = await pyClient.get(server.url, `/${other}`);
    expect(got.content.toString()).toBe('newer, on the old server');
    old.down = false;
    expect(old.content(other)?.toString()).toBe('newer, on the old server');
  });

  it('DELETE of a file only the old server has deletes it there; of a file nowhere, 404', async () => {
    const path = fresh();
    old.add(path, Buffer.from('only there'), V);
    const del = await pyClient.delete(server.url, `/${path}`, V);
    expect(del.status).toBe(200);
    expect(old.files.has(path)).toBe(false);
    expect((await pyClient.get(server.url, `/${path}`)).status).toBe(404);

    const both = fresh();
    expect((await pyClient.put(server.url, `/${both}`, Buffer.from('both'), V)).status).toBe(200);
    expect((await pyClient.delete(server.url, `/${both}`, V)).status).toBe(200);
    expect(old.files.has(both)).toBe(false);
    expect((await pyClient.get(server.url, `/${both}`)).status).toBe(404);

    expect((await pyClient.delete(server.url, `/${fresh()}`, V)).status).toBe(404);
  });

  it('/list merges both sides, sorted, each name once, non-ASCII names as they are', async () => {
    const dir = fresh('dir').replace(/\/dir$/, '');
    expect((await pyClient.put(server.url, `/${dir}/here`, Buffer.from('1'), V)).status).toBe(200);
    old.add(`${dir}/über/ąę`, Buffer.from('2'), V);
    old.add(`${dir}/a-old`, Buffer.from('3'), V);
    // "here" is on both (PUTs go to both); the rest only on the old server.
    expect(await list(server.url, dir)).toEqual(['a-old', 'here', 'über/ąę']);
  });

  it('the old server down: 503 for what only it could answer, never 404; what is here is still served', async () => {
    const here = fresh();
    expect((await pyClient.put(server.url, `/${here}`, Buffer.from('here'), V)).status).toBe(200);
    old.down = true;
    const absent = fresh();
    expect((await pyClient.get(server.url, `/${absent}`)).status).toBe(503);
    expect((await pyClient.head(server.url, `/${absent}`)).status).toBe(503);
    expect((await http(`${server.url}/list/${absent.split('/')[0]}`)).status).toBe(503);
    expect((await pyClient.delete(server.url, `/${absent}`, V)).status).toBe(503);
    const got = await pyClient.get(server.url, `/${here}`);
    expect(got.status).toBe(200);
    expect(got.content.toString()).toBe('here');
    expect(
      await metricValue(server.url, 's3dedup_filetracker_fallbacks_total', '{outcome="failed"}'),
    ).toBeGreaterThanOrEqual(3);
  });

  it('a connection reset or a body cut off is a 503 and the next GET succeeds; a corrupt file on the old server is a 502 and stores nothing', async () => {
    const path = fresh();
    old.add(path, Buffer.from('fine'), V);
    old.fail(path, 'reset');
    expect((await pyClient.get(server.url, `/${path}`)).status).toBe(503);
    old.fail(path, 'cut');
    expect((await pyClient.get(server.url, `/${path}`)).status).toBe(503);
    expect((await pyClient.get(server.url, `/${path}`)).content.toString()).toBe('fine');

    const bad = fresh();
    const gz = gzipSync(Buffer.from('some content'));
    // Cut short: what a disk error on the old server looks like.
    old.files.set(bad, { stored: gz.subarray(0, gz.length - 6), logicalSize: 12, version: V });
    const res = await pyClient.get(server.url, `/${bad}`);
    expect(res.status).toBe(502);
    expect(res.headers['x-exception']).toMatch(/old Filetracker/);
    old.files.delete(bad);
    expect((await pyClient.get(server.url, `/${bad}`)).status).toBe(404);
  });
});

/**
 * The background copy of `live-migrate` (everything, or a --file-list), and
 * an old server that redirects with 307 (a Filetracker migration server).
 */
describe('live migration: background copy and redirects', () => {
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
  const start = async (...args: string[]) => {
    server = await startServerProcess(d.env, ['live-migrate', ...args]);
    return server.url;
  };
  const copied = (url: string) =>
    metricValue(url, 's3dedup_migration_files_total', '{outcome="copied"}');

  it('copies everything in the background, following 307s to the server the old one redirects to', async () => {
    const target = await new FakeFiletracker().start();
    const old = await new FakeFiletracker({ redirectTo: target.url }).start();
    olds.push(target, old);
    const contents = new Map<string, Buffer>();
    for (let i = 0; i < 300; i++) {
      const path = `bg/${i % 7}/${i}`;
      contents.set(path, randomBytes(1000 + i));
      old.add(path, contents.get(path) as Buffer, V + i);
    }
    target.add('moved/x', Buffer.from('moved away'), V);
    const url = await start('--filetracker-url', old.url, '--max-concurrency', '4');
    const moved = await pyClient.get(url, '/moved/x');
    expect(moved.status).toBe(200);
    expect(moved.content.toString()).toBe('moved away');
    await eventually(async () => expect(await copied(url)).toBe(300), 30_000);
    old.down = true;
    for (const [path, content] of contents) {
      const got = await pyClient.get(url, `/${path}`);
      expect(got.status).toBe(200);
      expect(digestOf(got.content)).toBe(digestOf(content));
    }
  }, 60_000);

  it('with --file-list copies only the listed paths; with --proxy-only nothing until asked', async () => {
    const old = await new FakeFiletracker().start();
    olds.push(old);
    for (let i = 0; i < 40; i++) old.add(`fl/${i}`, Buffer.from(`file ${i}`), V);
    const listFile = join(d.env.TEMP_DIR as string, '..', 'wanted.txt');
    await writeFile(listFile, '/fl/1\n/fl/2\nfl/3\n\n');
    let url = await start('--filetracker-url', old.url, '--file-list', listFile);
    await eventually(async () => expect(await copied(url)).toBe(3), 20_000);
    old.down = true;
    for (const i of [1, 2, 3]) expect((await pyClient.get(url, `/fl/${i}`)).status).toBe(200);
    expect((await pyClient.get(url, '/fl/4')).status).toBe(503);
    await server?.stop();

    old.down = false;
    url = await start('--filetracker-url', old.url, '--proxy-only');
    await new Promise((r) => setTimeout(r, 1000));
    expect(old.requests.filter((r) => r === 'GET /files/fl/5')).toEqual([]);
    expect(await copied(url)).toBe(0);
  }, 60_000);

  it('refuses to start against a server that is not V2; starts, answering 503, while the old server is down', async () => {
    const v1 = await new FakeFiletracker({ v1: true }).start();
    olds.push(v1);
    await expect(
      startServerProcess(d.env, ['live-migrate', '--filetracker-url', v1.url]),
    ).rejects.toThrow(/does not speak Filetracker protocol 2/);
    const url = await start('--filetracker-url', 'http://127.0.0.1:9', '--proxy-only');
    expect((await pyClient.get(url, '/not/here/yet')).status).toBe(503);
    expect((await pyClient.put(url, '/new', Buffer.from('x'), V)).status).toBe(503);
  });
});
