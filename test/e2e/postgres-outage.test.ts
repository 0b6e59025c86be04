import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresOutage, startPostgres } from '../services/postgres.js';
import { pyVersionQuery } from '../support/http.js';
import { type ServerProcess, startServerProcess } from '../support/process.js';
import { makeTempDir } from '../support/tmp.js';

async function send(url: string, method: 'GET' | 'HEAD' | 'PUT', body?: Buffer) {
  const res = await request(url, { method, body, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const data = Buffer.from(await res.body.arrayBuffer());
  return {
    status: res.statusCode,
    body: data,
    exception: String(res.headers['x-exception'] ?? ''),
  };
}

/**
 * SPEC §10 "Backend faults": PostgreSQL goes away under load and comes back.
 * Requests meanwhile fail with 503 within a bounded time (never 404, never a
 * wrong body), and service resumes without restarting s3dedup. This test has
 * a PostgreSQL server of its own, so the outage touches nothing else.
 */
describe('PostgreSQL outage under load', () => {
  let pg: Awaited<ReturnType<typeof startPostgres>>;
  let dir: { path: string; remove(): Promise<void> };
  let server: ServerProcess;
  const paths = Array.from({ length: 16 }, (_, i) => `outage/file-${i}`);
  // Per path: every content ever sent (any of them may be what a racing GET sees)
  // and the contents that may be the last one (after an uncertain PUT, two).
  const sent = new Map<string, Set<string>>();
  const last = new Map<string, Set<string>>();

  beforeAll(async () => {
    pg = await startPostgres();
    dir = await makeTempDir();
    server = await startServerProcess({
      KVSTORAGE_TYPE: 'postgres',
      LOCKS_TYPE: 'postgres',
      DATABASE_URL: pg.url,
      STORAGE_PATH: join(dir.path, 'blobs'),
      TEMP_DIR: join(dir.path, 'tmp'),
      POSTGRES_CONNECT_TIMEOUT: '1',
      POSTGRES_QUERY_TIMEOUT: '2',
      LOCK_TIMEOUT: '2',
    });
    for (const path of paths) {
      const content = `${path} v0 ${randomBytes(8).toString('hex')}`;
      expect(
        (
          await send(
            `${server.url}/files/${path}?${pyVersionQuery(1)}`,
            'PUT',
            Buffer.from(content),
          )
        ).status,
      ).toBe(200);
      sent.set(path, new Set([content]));
      last.set(path, new Set([content]));
    }
  }, 60_000);

  afterAll(async () => {
    if (server?.child.exitCode !== null) console.log(server?.output().slice(-3000));
    await server?.stop();
    pg?.stop();
    await dir?.remove();
  });

  it('answers 503 during the outage, never 404 or a wrong body, and recovers by itself', async () => {
    const statuses = new Map<number, number>();
    const wrong: string[] = [];
    let version = 2;
    let stop = false;
    const busy = new Set<string>();
    const count = (status: number) => statuses.set(status, (statuses.get(status) ?? 0) + 1);

    const worker = async (w: number) => {
      let i = w;
      while (!stop) {
        const path = paths[i++ % paths.length] as string;
        const kind = i % 4;
        if (kind === 0 && !busy.has(path)) {
          busy.add(path);
          const content = `${path} v${version} ${randomBytes(8).toString('hex')}`;
          sent.get(path)?.add(content);
          const res = await send(
            `${server.url}/files/${path}?${pyVersionQuery(version++)}`,
            'PUT',
            Buffer.from(content),
          );
          count(res.status);
          if (res.status === 200) last.set(path, new Set([content]));
          else if (res.status === 503)
            last.get(path)?.add(content); // may or may not have committed
          else wrong.push(`PUT ${path}: ${res.status} ${res.exception}`);
          busy.delete(path);
        } else {
          const method = kind === 1 ? 'HEAD' : 'GET';
          const res = await send(`${server.url}/files/${path}`, method);
          count(res.status);
          if (res.status === 200 && method === 'GET') {
            const body = gunzipSync(res.body).toString();
            if (!sent.get(path)?.has(body)) wrong.push(`GET ${path}: a body never sent for it`);
          } else if (res.status !== 200 && res.status !== 503) {
            wrong.push(`${method} ${path}: ${res.status} ${res.exception}`);
          }
        }
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));

    await sleep(1500);
    await postgresOutage(pg.dir, 'pause');
    const outageStarted = Date.now();
    // During the outage every request gets an answer, a 503, in bounded time.
    const during = await send(`${server.url}/files/${paths[0]}`, 'GET');
    expect(during.status).toBe(503);
    expect(during.exception).toMatch(/database unavailable/);
    expect(Date.now() - outageStarted).toBeLessThan(10_000);
    await sleep(2000);
    await postgresOutage(pg.dir, 'resume');

    // Service resumes without restarting s3dedup.
    const resumed = Date.now();
    let recovered = false;
    while (Date.now() - resumed < 15_000) {
      if ((await send(`${server.url}/files/${paths[1]}`, 'GET')).status === 200) {
        recovered = true;
        break;
      }
      await sleep(200);
    }
    await sleep(1500);
    stop = true;
    await Promise.all(workers);
    console.log(`[postgres outage] statuses: ${JSON.stringify(Object.fromEntries(statuses))}`);

    expect(recovered).toBe(true);
    expect(server.child.exitCode).toBeNull();
    expect(wrong).toEqual([]);
    expect(statuses.get(503) ?? 0).toBeGreaterThan(0);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(0);
    // Every file holds its last acknowledged content (or an uncertain later one).
    for (const path of paths) {
      const res = await send(`${server.url}/files/${path}`, 'GET');
      expect(res.status).toBe(200);
      expect(last.get(path)?.has(gunzipSync(res.body).toString()), path).toBe(true);
    }
    expect((await send(`${server.url}/health`, 'GET')).status).toBe(200);
  }, 90_000);
});
