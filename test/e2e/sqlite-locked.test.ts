import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { http, pyVersionQuery } from '../support/http.js';
import { filesystemProfile, startTestServer, type TestServer } from '../support/server.js';
import { holdSqliteWriteLock } from '../support/sqlite-lock.js';

const V = 1234567890;
/**
 * Quick enough for an answer that did not wait on the database: a server
 * blocked on it would take LOCK_TIMEOUT (2 s here). Generous, as another
 * test file may be running beside this one on two cores.
 */
const FAST_MS = 500;

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const started = performance.now();
  const value = await fn();
  return { ms: performance.now() - started, value };
}

/**
 * SQLite held by another process: writers wait (up to LOCK_TIMEOUT, then
 * 503), while readers and /version answer as usual (issue #9, defect 6).
 */
describe('SQLite database locked by another process', () => {
  let srv: TestServer;

  beforeAll(async () => {
    srv = await startTestServer(filesystemProfile, { LOCK_TIMEOUT: '2' });
    const put = await http(`${srv.url}/files/a?${pyVersionQuery(V)}`, { method: 'PUT', body: 'a' });
    expect(put.status).toBe(200);
  });
  afterAll(async () => {
    await srv?.close();
  });

  it('a waiting PUT delays nobody else, and lands once the lock is released', async () => {
    const lock = await holdSqliteWriteLock(srv.config.SQLITE_PATH);
    let settled = false;
    const put = http(`${srv.url}/files/b?${pyVersionQuery(V)}`, { method: 'PUT', body: 'b' });
    void put.finally(() => {
      settled = true;
    });
    try {
      for (let i = 0; i < 10; i++) {
        await new Promise((r) => setTimeout(r, 50));
        const version = await timed(() => http(`${srv.url}/version`));
        expect(version.value.status).toBe(200);
        expect(version.ms).toBeLessThan(FAST_MS);
        const get = await timed(() => http(`${srv.url}/files/a`));
        expect(get.value.status).toBe(200);
        expect(get.ms).toBeLessThan(FAST_MS);
        const head = await timed(() => http(`${srv.url}/files/a`, { method: 'HEAD' }));
        expect(head.value.status).toBe(200);
        expect(head.ms).toBeLessThan(FAST_MS);
      }
      // Still waiting for the database, not failed.
      expect(settled).toBe(false);
    } finally {
      await lock.release();
    }
    expect((await put).status).toBe(200);
    expect((await http(`${srv.url}/files/b`)).status).toBe(200);
  });

  it('a lock held past LOCK_TIMEOUT is a 503 for the writer, and nothing changes', async () => {
    const lock = await holdSqliteWriteLock(srv.config.SQLITE_PATH);
    try {
      const put = await timed(() =>
        http(`${srv.url}/files/c?${pyVersionQuery(V)}`, { method: 'PUT', body: 'c' }),
      );
      expect(put.value.status).toBe(503);
      expect(put.value.headers['x-exception']).toMatch(/locked by another process/);
      expect(put.ms).toBeGreaterThanOrEqual(1900);
      const del = await http(`${srv.url}/files/a?${pyVersionQuery(V)}`, { method: 'DELETE' });
      expect(del.status).toBe(503);
    } finally {
      await lock.release();
    }
    expect((await http(`${srv.url}/files/c`)).status).toBe(404);
    expect((await http(`${srv.url}/files/a`)).status).toBe(200);
    const retry = await http(`${srv.url}/files/c?${pyVersionQuery(V)}`, {
      method: 'PUT',
      body: 'c',
    });
    expect(retry.status).toBe(200);
  });
});
