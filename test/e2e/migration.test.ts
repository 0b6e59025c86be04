import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Deployment, deployment } from '../support/deployment.js';
import { FakeFiletracker } from '../support/fake-filetracker.js';
import { digestOf, pyClient, pyParseLastModified } from '../support/http.js';
import { CLI, runCli, type ServerProcess, startServerProcess } from '../support/process.js';

/** Runs `fn` over `items`, `n` at a time. */
async function inParallel<T>(items: T[], n: number, fn: (item: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** The summary's "copied N files" / "skipped N" / "failed N" counts. */
function counts(stdout: string) {
  const count = (word: string) =>
    Number(new RegExp(`^${word}\\s+(\\d+) files`, 'm').exec(stdout)?.[1]);
  return { copied: count('copied'), skipped: count('skipped'), failed: count('failed') };
}

/**
 * `s3dedup migrate` from a V2 Filetracker (issue #12), against the fake old
 * server and both deployments: every file arrives with its content, version
 * and size; duplicates are stored once; reruns skip what is here; one bad
 * file is a reported failure, not the end of the run.
 */
describe.each(['embedded', 'production'] as const)('migrate from V2 (%s)', (kind) => {
  let d: Deployment;
  let old: FakeFiletracker;
  let server: ServerProcess | undefined;
  // A few thousand on the embedded store; fewer through radosgw + PostgreSQL, which
  // run the same code paths at a tenth of the speed on this machine.
  const files = kind === 'embedded' ? 2000 : 640;
  beforeAll(async () => {
    d = await deployment(kind);
    old = await new FakeFiletracker().start();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await old?.stop();
    await d?.remove();
  });

  async function stopServer() {
    await server?.stop();
    server = undefined;
  }
  const migrate = (...extra: string[]) =>
    runCli(['migrate', '--filetracker-url', old.url, ...extra], d.env);

  /** Every file of `paths` is served by s3dedup as the old server holds it. */
  async function expectAllHere(paths: string[]) {
    server ??= await startServerProcess(d.env);
    const url = server.url;
    const wrong: string[] = [];
    await inParallel(paths, 16, async (path) => {
      const file = old.files.get(path);
      const res = await pyClient.get(url, `/${path}`);
      const ok =
        res.status === 200 &&
        digestOf(res.content) === digestOf(old.content(path) as Buffer) &&
        pyParseLastModified(res.headers['last-modified']) === file?.version &&
        res.headers['logical-size'] === String(file?.logicalSize);
      if (!ok) wrong.push(`${path}: ${res.status} ${res.headers['last-modified']}`);
    });
    expect(wrong.slice(0, 10)).toEqual([]);
  }

  it(`copies ${files} files with their versions; duplicates stored once; non-ASCII names mapped back`, async () => {
    const contents = Array.from({ length: files / 8 }, (_, i) => randomBytes(500 + i * 13));
    const paths: string[] = [];
    for (let i = 0; i < files; i++) {
      const path =
        i % 100 === 0 ? `zadania/über-${i}/ąę 日本.in` : `problems/p${i % 37}/tests/${i}.in`;
      // Versions across the range the protocol allows, pre-1970 included.
      old.add(
        path,
        contents[i % contents.length] as Buffer,
        i % 10 === 0 ? -86_400 * i : 1_234_567_890 + i,
      );
      paths.push(path);
    }
    const run = await migrate('--max-concurrency', '8');
    expect(run.code, run.output).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: files, skipped: 0, failed: 0 });
    // Nothing was asked for under its mis-encoded listed name.
    expect(old.requests.filter((r) => r.includes('Ã'))).toEqual([]);
    expect(run.stdout).toContain(
      `store now: ${files} files, ${files / 8} distinct contents, dedup ratio 8.00`,
    );
    await expectAllHere(paths);

    const stats = await runCli(['stats', '--json'], d.env);
    expect(stats.code, stats.output).toBe(0);
    const s = JSON.parse(stats.stdout) as { files: number; blobs: number; dedupRatio: number };
    expect({ files: s.files, blobs: s.blobs }).toEqual({ files, blobs: files / 8 });
    expect(s.dedupRatio).toBeCloseTo(8, 1);
  }, 180_000);

  it('a rerun skips what is here and copies only what changed on the old server', async () => {
    old.add('problems/p1/tests/1.in', Buffer.from('changed since'), 1_300_000_000);
    const run = await migrate();
    expect(run.code, run.output).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: 1, skipped: files - 1, failed: 0 });
    await stopServer();
    await expectAllHere(['problems/p1/tests/1.in']);
  }, 120_000);

  it('a run killed midway is finished by a rerun', async () => {
    await stopServer();
    const paths = Array.from({ length: 400 }, (_, i) => `killed/${i}`);
    for (const p of paths) old.add(p, randomBytes(3000), 1_400_000_000);
    old.delayMs = 5;
    const before = old.requests.length;
    const child = spawn(CLI, ['migrate', '--filetracker-url', old.url, '--max-concurrency', '2'], {
      env: { PATH: process.env.PATH ?? '', ...d.env },
      stdio: 'ignore',
    });
    const exited = new Promise((resolve) => child.once('exit', resolve));
    // Killed once it has fetched about a quarter of the new files.
    const fetched = () =>
      old.requests.slice(before).filter((r) => r.startsWith('GET /files/killed/')).length;
    while (fetched() < 100 && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    await exited;
    old.delayMs = 0;

    const rerun = await migrate();
    expect(rerun.code, rerun.output).toBe(0);
    const c = counts(rerun.stdout);
    expect(c.failed).toBe(0);
    // The killed run had stored some; the rerun copied the rest, and nothing twice.
    expect(c.copied).toBeGreaterThan(0);
    expect(c.copied).toBeLessThan(400);
    expect(c.copied + c.skipped).toBe(files + 400);
    await expectAllHere(paths);
  }, 120_000);

  it('transient failures (a 500, a reset, a body cut off) are retried; a vanished file and one that keeps failing are reported, the rest copied', async () => {
    await stopServer();
    for (let i = 0; i < 20; i++) old.add(`flaky/${i}`, randomBytes(2000), 1_500_000_000);
    old.fail('flaky/1', 'error', 2);
    old.fail('flaky/2', 'reset', 2);
    old.fail('flaky/3', 'gone', 1);
    old.fail('flaky/5', 'cut', 2);
    old.fail('flaky/4', 'error', 50);
    const list = join(d.env.TEMP_DIR as string, '..', 'flaky.txt');
    // As operators write them: absolute Filetracker names.
    await writeFile(list, Array.from({ length: 20 }, (_, i) => `/flaky/${i}\n`).join(''));
    const run = await migrate('--file-list', list);
    expect(run.code, run.output).toBe(1);
    expect(counts(run.stdout)).toEqual({ copied: 18, skipped: 0, failed: 2 });
    expect(run.stdout).toMatch(/^ {2}flaky\/3: not on V2 Filetracker at .* any more \(404\)$/m);
    expect(run.stdout).toMatch(/^ {2}flaky\/4: .*HTTP 500/m);
    await expectAllHere(
      Array.from({ length: 20 }, (_, i) => `flaky/${i}`).filter((p) => !/\/[34]$/.test(p)),
    );
    // The one that kept failing recovers: a rerun copies it, and only it.
    await stopServer();
    old.files.delete('flaky/3');
    old.heal();
    const again = await migrate();
    expect(again.code, again.output).toBe(0);
    expect(counts(again.stdout).copied).toBe(1);
  }, 120_000);

  it('refuses a server that does not speak V2, and a bad URL, with a clear message and nothing changed', async () => {
    const v1 = await new FakeFiletracker({ v1: true }).start();
    try {
      const run = await runCli(['migrate', '--filetracker-url', v1.url], d.env);
      expect(run.code).toBe(1);
      expect(run.output).toMatch(/does not speak Filetracker protocol 2.*migrate-v1/);
      expect(
        v1.requests.filter((r) => r.startsWith('GET /files') || r.startsWith('GET /list')),
      ).toEqual([]);
    } finally {
      await v1.stop();
    }
    const down = await runCli(['migrate', '--filetracker-url', 'http://127.0.0.1:9'], d.env);
    expect(down.code).toBe(1);
    expect(down.output).toMatch(/filetracker unavailable/);
    const none = await runCli(['migrate'], d.env);
    expect(none.code).toBe(2);
    expect(none.output).toMatch(/needs --filetracker-url/);
  }, 60_000);
});
