import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { http, pyVersionQuery } from '../support/http.js';
import { filesystemProfile, startTestServer, type TestServer } from '../support/server.js';

const q = `?${pyVersionQuery(1234567890)}`;

/**
 * SPEC §2 "Errors": a failing backend is a 503 with a clear message, never a
 * 404 (a client must not conclude a file is gone because a dependency blinked),
 * and the server stays up.
 */
describe('backend failures', () => {
  let srv: TestServer | undefined;
  afterEach(async () => {
    await srv?.close().catch(() => {});
    srv = undefined;
  });

  function unavailable(res: { status: number; headers: Record<string, string> }, what: RegExp) {
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.headers['x-exception']).toMatch(what);
  }

  it('blob store broken: GET is 503, HEAD still answers from metadata, health says so', async () => {
    srv = await startTestServer(filesystemProfile);
    expect(
      (await http(`${srv.url}/files/a/file${q}`, { method: 'PUT', body: 'content' })).status,
    ).toBe(200);
    // Replace the blob folder with a plain file: every path under it fails with ENOTDIR, not ENOENT.
    const blobs = srv.config.STORAGE_PATH;
    await rename(blobs, `${blobs}.moved`);
    await writeFile(blobs, 'not a folder');

    unavailable(await http(`${srv.url}/files/a/file`), /storage unavailable/);
    expect((await http(`${srv.url}/files/a/file`, { method: 'HEAD' })).status).toBe(200);
    unavailable(
      await http(`${srv.url}/files/a/new${q}`, { method: 'PUT', body: 'new content' }),
      /storage unavailable/,
    );
    const health = await http(`${srv.url}/health`);
    expect(health.status).toBe(503);
    expect(JSON.parse(health.body.toString())).toMatchObject({
      status: 'degraded',
      checks: { database: 'ok' },
    });

    // It recovers by itself when the folder is back.
    await rename(blobs, `${blobs}.file`);
    await rename(`${blobs}.moved`, blobs);
    expect((await http(`${srv.url}/files/a/file`)).status).toBe(200);
    expect((await http(`${srv.url}/health`)).status).toBe(200);
  });

  it('TEMP_DIR broken: a spilled upload is a 503 (storage), health says so, and it recovers', async () => {
    srv = await startTestServer(filesystemProfile, { SPILL_THRESHOLD: '1024' });
    const temp = srv.config.TEMP_DIR;
    // No hash, and its gzip past SPILL_THRESHOLD: the body is held in a file under TEMP_DIR.
    const spilled = () =>
      http(`${srv?.url}/files/spilled${q}`, { method: 'PUT', body: randomBytes(200_000) });
    expect((await spilled()).status).toBe(200);
    await rm(temp, { recursive: true, force: true });
    await writeFile(temp, 'a file where the folder should be');

    unavailable(await spilled(), /storage unavailable: temporary folder TEMP_DIR/);
    const health = await http(`${srv.url}/health`);
    expect(health.status).toBe(503);
    expect(JSON.parse(health.body.toString())).toMatchObject({
      status: 'degraded',
      checks: { database: 'ok', storage: expect.stringMatching(/TEMP_DIR/) },
    });
    // Uploads that do not spill are not affected.
    expect((await http(`${srv.url}/files/small${q}`, { method: 'PUT', body: 'x' })).status).toBe(
      200,
    );

    await rm(temp);
    expect((await spilled()).status).toBe(200);
    expect((await http(`${srv.url}/health`)).status).toBe(200);
  });

  it('database gone: every operation is 503, never 404, and the server stays up', async () => {
    srv = await startTestServer(filesystemProfile);
    await srv.server.backends.meta.close();
    unavailable(await http(`${srv.url}/files/any`), /database unavailable/);
    unavailable(await http(`${srv.url}/files/any`, { method: 'HEAD' }), /database unavailable/);
    unavailable(
      await http(`${srv.url}/files/any${q}`, { method: 'PUT', body: 'x' }),
      /database unavailable/,
    );
    unavailable(
      await http(`${srv.url}/files/any${q}`, { method: 'DELETE' }),
      /database unavailable/,
    );
    unavailable(await http(`${srv.url}/list/${q}`), /database unavailable/);
    expect((await http(`${srv.url}/version`)).status).toBe(200);
    expect((await http(`${srv.url}/health`)).status).toBe(503);
  });

  it('a path lock that cannot be had within LOCK_TIMEOUT is a 503, within a bounded time', async () => {
    srv = await startTestServer(filesystemProfile, { LOCK_TIMEOUT: '0.3' });
    const held = srv.server.backends.locks.session();
    await held.acquire('path:busy', 'exclusive', { timeoutMs: 1000 });
    try {
      const started = Date.now();
      unavailable(
        await http(`${srv.url}/files/busy${q}`, { method: 'PUT', body: 'x' }),
        /Timed out after 300 ms/,
      );
      unavailable(await http(`${srv.url}/files/busy${q}`, { method: 'DELETE' }), /Timed out/);
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await held.end();
    }
    expect((await http(`${srv.url}/files/busy${q}`, { method: 'PUT', body: 'x' })).status).toBe(
      200,
    );
  });

  it('a blob folder that cannot be created stops start-up with a clear error', async () => {
    const { makeTempDir } = await import('../support/tmp.js');
    const dir = await makeTempDir();
    try {
      await mkdir(`${dir.path}/x`);
      await writeFile(`${dir.path}/x/blobs`, 'a file where the folder should be');
      await expect(
        startTestServer(filesystemProfile, { STORAGE_PATH: `${dir.path}/x/blobs` }),
      ).rejects.toThrow(/ENOTDIR|EEXIST/);
    } finally {
      await dir.remove();
    }
  });
});

describe('leftovers of a crashed process', () => {
  it('are removed at start-up; files of live processes are kept', async () => {
    const { makeTempDir } = await import('../support/tmp.js');
    const { join } = await import('node:path');
    const { readdir } = await import('node:fs/promises');
    const dir = await makeTempDir();
    try {
      // A pid above the kernel's maximum cannot be running.
      const dead = 4_194_305;
      await mkdir(join(dir.path, 'tmp'), { recursive: true });
      await mkdir(join(dir.path, 'blobs', '.incoming'), { recursive: true });
      await writeFile(join(dir.path, 'tmp', `spill-${dead}-abc`), 'partial');
      await writeFile(join(dir.path, 'tmp', `spill-${process.pid}-live`), 'in use');
      await writeFile(join(dir.path, 'blobs', '.incoming', `incoming-${dead}-abc`), 'partial');
      const srv = await startTestServer(filesystemProfile, {
        TEMP_DIR: join(dir.path, 'tmp'),
        STORAGE_PATH: join(dir.path, 'blobs'),
      });
      try {
        expect(await readdir(join(dir.path, 'tmp'))).toEqual([`spill-${process.pid}-live`]);
        expect(await readdir(join(dir.path, 'blobs', '.incoming'))).toEqual([]);
      } finally {
        await srv.close();
      }
    } finally {
      await dir.remove();
    }
  });
});
