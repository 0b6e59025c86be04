import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Deployment, deployment } from '../support/deployment.js';
import { http, metricValue, pyClient, pyVersionQuery } from '../support/http.js';
import { runCli, type ServerProcess, startServerProcess } from '../support/process.js';
import { makeTempDir } from '../support/tmp.js';

const V = 1_234_567_890;

/** /metrics and /metrics/json after known traffic (issue #13, part 1). */
describe('metrics', () => {
  let dir: Awaited<ReturnType<typeof makeTempDir>>;
  let server: ServerProcess;
  beforeAll(async () => {
    dir = await makeTempDir();
    server = await startServerProcess({
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
      SPILL_THRESHOLD: '10000',
    });
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await dir?.remove();
  });
  const value = (name: string, labels = '') => metricValue(server.url, name, labels);

  it('counts requests, dedup hits and misses, refusals and backend failures as they happen', async () => {
    const content = randomBytes(3000);
    expect((await pyClient.put(server.url, '/m/a', content, V)).status).toBe(200);
    expect((await pyClient.put(server.url, '/m/b', content, V)).status).toBe(200);
    expect((await pyClient.put(server.url, '/m/c', randomBytes(3000), V)).status).toBe(200);
    expect(await value('s3dedup_dedup_hits_total')).toBe(1);
    expect(await value('s3dedup_dedup_misses_total')).toBe(2);

    const refused = await http(`${server.url}/files/m/bad?${pyVersionQuery(V)}`, {
      method: 'PUT',
      headers: { 'sha256-checksum': '0'.repeat(64) },
      body: content,
    });
    expect(refused.status).toBe(400);
    expect(await value('s3dedup_checksum_rejections_total', '{reason="CHECKSUM_MISMATCH"}')).toBe(
      1,
    );

    // Raw, no hints, past SPILL_THRESHOLD: it must spill, and TEMP_DIR is now a regular file.
    await rm(join(dir.path, 'tmp'), { recursive: true, force: true });
    await writeFile(join(dir.path, 'tmp'), 'x');
    const spilled = await http(`${server.url}/files/m/spill?${pyVersionQuery(V)}`, {
      method: 'PUT',
      body: randomBytes(3_000_000),
    });
    expect(spilled.status).toBe(503);
    expect(await value('s3dedup_backend_errors_total', '{backend="storage"}')).toBe(1);

    expect((await pyClient.get(server.url, '/m/a')).status).toBe(200);
    expect((await pyClient.get(server.url, '/ft/m/absent')).status).toBe(404);
    const files = (method: string, status: number) =>
      value(
        's3dedup_http_requests_total',
        `{method="${method}",endpoint="files",status="${status}"}`,
      );
    expect(await files('PUT', 200)).toBe(3);
    expect(await files('PUT', 400)).toBe(1);
    expect(await files('PUT', 503)).toBe(1);
    expect(await files('GET', 200)).toBe(1);
    expect(await files('GET', 404)).toBe(1);
    expect(
      await value('s3dedup_http_request_duration_seconds_count', '{method="PUT",endpoint="files"}'),
    ).toBe(5);
    expect(await value('s3dedup_uploads_in_flight')).toBe(0);
    // Each stored PUT took its path lock once; refused ones never got that far.
    expect(await value('s3dedup_lock_wait_seconds_count', '{kind="path"}')).toBe(3);
  });

  it('counts the bytes of uploads in flight while they arrive, and the collections paced meanwhile', async () => {
    // The test before left TEMP_DIR a regular file: a folder again, for this spilling upload.
    await rm(join(dir.path, 'tmp'), { force: true });
    await mkdir(join(dir.path, 'tmp'));
    const before = await value('s3dedup_gc_pacer_collections_total');
    const req = request(`${server.url}/files/m/slow?${pyVersionQuery(V)}`, { method: 'PUT' });
    const answered = new Promise<number>((resolve, reject) => {
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
    });
    req.write(randomBytes(2 * 1024 * 1024));
    // All but the first read (which carried the headers, up to 64 KiB) is counted.
    await expect
      .poll(() => value('s3dedup_upload_bytes_in_flight'), { timeout: 10_000 })
      .toBeGreaterThanOrEqual(2 * 1024 * 1024 - 64 * 1024);
    expect(await value('s3dedup_upload_bytes_in_flight')).toBeLessThanOrEqual(2 * 1024 * 1024);
    expect(await value('s3dedup_uploads_in_flight')).toBe(1);
    for (let i = 0; i < 11; i++) req.write(randomBytes(2 * 1024 * 1024));
    req.end();
    expect(await answered).toBe(200);
    expect(await value('s3dedup_upload_bytes_in_flight')).toBe(0);
    expect(await value('s3dedup_uploads_in_flight')).toBe(0);
    // 24 MiB of fresh buffers: the pacer (4 MiB steps) ran minor collections.
    expect(await value('s3dedup_gc_pacer_collections_total')).toBeGreaterThan(before);
  });

  it('the same samples at /ft/metrics and as JSON at /metrics/json and /ft/metrics/json', async () => {
    const text = await http(`${server.url}/ft/metrics`);
    expect(text.status).toBe(200);
    expect(text.headers['content-type']).toMatch(/^text\/plain/);
    expect(text.body.toString()).toMatch(/^s3dedup_dedup_hits_total 1$/m);
    for (const path of ['/metrics/json', '/ft/metrics/json']) {
      const res = await http(`${server.url}${path}`);
      expect(res.status).toBe(200);
      const metrics = JSON.parse(res.body.toString()) as Array<{
        name: string;
        values: Array<{ value: number; labels: Record<string, string> }>;
      }>;
      const hits = metrics.find((m) => m.name === 's3dedup_dedup_hits_total');
      expect(hits?.values[0]?.value).toBe(1);
      for (const name of [
        's3dedup_http_requests_total',
        's3dedup_http_request_duration_seconds',
        's3dedup_dedup_misses_total',
        's3dedup_checksum_rejections_total',
        's3dedup_backend_errors_total',
        's3dedup_uploads_in_flight',
        's3dedup_upload_bytes_in_flight',
        's3dedup_lock_wait_seconds',
        's3dedup_gc_pacer_collections_total',
        's3dedup_gc_pacer_full_collections_total',
        's3dedup_cleaner_runs_total',
        's3dedup_migration_files_total',
        's3dedup_filetracker_fallbacks_total',
      ]) {
        expect(metrics.map((m) => m.name)).toContain(name);
      }
    }
  });
});

/**
 * The store's totals at /metrics, from two instances on one PostgreSQL and
 * one bucket: each shows the whole store, equal to what `stats` adds up.
 */
describe('store totals at /metrics, two instances on one database', () => {
  let d: Deployment;
  let a: ServerProcess;
  let b: ServerProcess;
  beforeAll(async () => {
    d = await deployment('production');
    [a, b] = await Promise.all([startServerProcess(d.env), startServerProcess(d.env)]);
  }, 60_000);
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await d?.remove();
  });

  it('files, blobs, bytes and ratios match the added-up store after traffic through both', async () => {
    const shared = randomBytes(20_000);
    for (let i = 0; i < 6; i++) {
      const via = i % 2 === 0 ? a : b;
      expect((await pyClient.put(via.url, `/t/shared${i}`, shared, V)).status).toBe(200);
      expect((await pyClient.put(via.url, `/t/own${i}`, randomBytes(5_000 + i), V)).status).toBe(
        200,
      );
    }
    // Replaced and deleted through the other instance.
    expect((await pyClient.put(b.url, '/t/own0', shared, V + 1)).status).toBe(200);
    expect((await pyClient.delete(a.url, '/t/own1', V + 1)).status).toBe(200);

    const stats = await runCli(['stats', '--json'], d.env);
    expect(stats.code, stats.output).toBe(0);
    const s = JSON.parse(stats.stdout) as Record<string, number>;
    expect(s.files).toBe(11);
    for (const server of [a, b]) {
      const value = (name: string) => metricValue(server.url, name);
      expect(await value('s3dedup_total_files')).toBe(s.files);
      expect(await value('s3dedup_total_blobs')).toBe(s.blobs);
      expect(await value('s3dedup_total_logical_size_bytes')).toBe(s.logicalBytes);
      expect(await value('s3dedup_total_storage_bytes')).toBe(s.storedBytes);
      expect(await value('s3dedup_deduplicated_bytes_saved')).toBe(s.bytesSaved);
      expect(await value('s3dedup_deduplication_ratio')).toBeCloseTo(s.dedupRatio as number, 6);
      expect(await value('s3dedup_storage_savings_ratio')).toBeCloseTo(s.savings as number, 6);
    }
  }, 60_000);
});
