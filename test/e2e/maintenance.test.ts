import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blobKey } from '../../src/dedup/keys.js';
import { type Deployment, deployment } from '../support/deployment.js';
import { pyClient } from '../support/http.js';
import { execSql } from '../support/invariants.js';
import { runCli, type ServerProcess, startServerProcess } from '../support/process.js';

const V = 1234567890;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * `s3dedup fsck`, `cleanup` and `stats` as an operator runs them, beside a
 * running server (issue #11): what they report, what they repair, their
 * exit codes. Each test leaves the store consistent for the next.
 */
describe.each(['embedded', 'production'] as const)('fsck, cleanup and stats (%s)', (kind) => {
  let d: Deployment;
  let server: ServerProcess;
  let stores: Awaited<ReturnType<Deployment['open']>>;
  let n = 0;
  beforeAll(async () => {
    d = await deployment(kind);
    server = await startServerProcess(d.env);
    stores = await d.open();
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    await stores?.close();
    await d?.remove();
  });

  const cli = (args: string[], env: Record<string, string> = {}) =>
    runCli(args, { ...d.env, ...env });
  /** fsck --repair beside the server: with in-process locks (embedded) the server must be stopped. */
  async function repair(...extra: string[]) {
    if (kind === 'production') return cli(['fsck', '--repair', ...extra]);
    await server.stop();
    try {
      return await cli(['fsck', '--repair', '--offline', ...extra]);
    } finally {
      server = await startServerProcess(d.env);
    }
  }
  async function consistent() {
    const run = await cli(['fsck', '--deep']);
    expect(run.code, run.output).toBe(0);
    expect(run.stdout).toMatch(/^consistent$/m);
  }
  const key = (content: Buffer) => blobKey(sha(content), 2);
  /** Stores a content under `count` paths; returns it and the paths. */
  async function files(count: number, size = 5000) {
    n++;
    const content = randomBytes(size);
    const paths = Array.from({ length: count }, (_, i) => `/m${n}/f${i}`);
    for (const p of paths) expect((await pyClient.put(server.url, p, content, V)).status).toBe(200);
    return { content, paths };
  }

  it('a consistent store: fsck and fsck --deep exit 0; stats adds it up', async () => {
    await files(3);
    await consistent();
    const stats = await cli(['stats', '--json']);
    expect(stats.code, stats.output).toBe(0);
    const s = JSON.parse(stats.stdout) as Record<string, number>;
    expect(s.files).toBeGreaterThanOrEqual(3);
    expect(s.dedupRatio).toBeGreaterThan(1);
    const text = await cli(['stats']);
    expect(text.stdout).toMatch(/^files\s+\d+$/m);
    expect(text.stdout).toMatch(/^dedup ratio\s+\d+\.\d\d$/m);
    expect(text.stdout).toMatch(/^savings\s+-?\d+\.\d%/m);
  });

  it('an object deleted behind the server: exit 4 naming the paths, restored by a PUT of the content', async () => {
    const { content, paths } = await files(2);
    await stores.blobs.delete(key(content));
    const run = await cli(['fsck']);
    expect(run.code, run.output).toBe(4);
    expect(run.stdout).toContain(`LOST ${sha(content)}: missing; 2 paths:`);
    for (const p of paths) expect(run.stdout).toContain(`  ${p.slice(1)}`);
    expect((await stores.meta.getBlob(sha(content)))?.damage).toBe('missing');
    // The content comes back: every path of it reads again.
    expect((await pyClient.put(server.url, `/m${n}/again`, content, V)).status).toBe(200);
    for (const p of paths)
      expect((await pyClient.get(server.url, p)).content.equals(content)).toBe(true);
    await consistent();
  });

  it('an object corrupted behind the server: only --deep sees it (exit 4, paths named); --repair gives it up and says so, and the content can be stored again', async () => {
    const { content, paths } = await files(2);
    const garbage = randomBytes((await stores.blobs.stat(key(content)))?.size ?? 0);
    await stores.blobs.put(key(content), Readable.from([garbage]), {
      beforeCommit: async () => 'replace',
    });
    expect((await cli(['fsck'])).code).toBe(0);
    const deep = await cli(['fsck', '--deep']);
    expect(deep.code, deep.output).toBe(4);
    expect(deep.stdout).toContain(`LOST ${sha(content)}: corrupt (not gzip`);
    for (const p of paths) expect(deep.stdout).toContain(`  ${p.slice(1)}`);
    const repaired = await repair('--deep');
    expect(repaired.code, repaired.output).toBe(4);
    expect(repaired.stdout).toContain(`LOST ${sha(content)}: corrupt`);
    expect(repaired.stdout).toContain('2 paths, removed');
    for (const p of paths) expect((await pyClient.get(server.url, p)).status).toBe(404);
    // The corrupt object went with it: the same content uploaded again is stored whole.
    expect((await pyClient.put(server.url, `/m${n}/again`, content, V)).status).toBe(200);
    expect((await pyClient.get(server.url, `/m${n}/again`)).content.equals(content)).toBe(true);
    await consistent();
  });

  it('a count gone wrong: exit 1, recounted by --repair', async () => {
    const { content } = await files(2);
    await execSql(stores.meta, `UPDATE blobs SET refcount = 7 WHERE hash = '${sha(content)}'`);
    const run = await cli(['fsck']);
    expect(run.code, run.output).toBe(1);
    expect(run.stdout).toContain(`count of ${sha(content)} is 7, 2 paths point at it`);
    const repaired = await repair();
    expect(repaired.code, repaired.output).toBe(0);
    expect(repaired.stdout).toContain('recounted');
    expect((await stores.meta.getBlob(sha(content)))?.refcount).toBe(2);
    await consistent();
  });

  it('totals kept for /metrics that drifted from the blob rows: exit 1, corrected by --repair', async () => {
    await files(2);
    await execSql(
      stores.meta,
      'UPDATE store_totals SET files = files + 5, stored_bytes = stored_bytes - 7',
    );
    const run = await cli(['fsck']);
    expect(run.code, run.output).toBe(1);
    expect(run.stdout).toMatch(
      /totals kept for \/metrics \(\d+ files.*\) differ from the blob rows/,
    );
    const repaired = await repair();
    expect(repaired.code, repaired.output).toBe(0);
    expect(repaired.stdout).toContain('; corrected');
    expect(await stores.meta.keptTotals()).toEqual(await stores.meta.totals());
    await consistent();
  });

  it('the same content in other gzip bytes than recorded: exit 1, size corrected by --repair', async () => {
    const { content, paths } = await files(1, 50_000);
    const other = Buffer.concat([
      gzipSync(content.subarray(0, 100)),
      gzipSync(content.subarray(100)),
    ]);
    await stores.blobs.put(key(content), Readable.from([other]), {
      beforeCommit: async () => 'replace',
    });
    const run = await cli(['fsck']);
    expect(run.code, run.output).toBe(1);
    expect(run.stdout).toContain(`(content checked and right)`);
    const repaired = await repair();
    expect(repaired.code, repaired.output).toBe(0);
    const got = await pyClient.get(server.url, paths[0] as string);
    expect(got.headers['content-length']).toBe(String(other.length));
    expect(got.content.equals(content)).toBe(true);
    await consistent();
  });

  /** A cleaner run that does not wait out the grace period (stopping the server where locks cannot reach it). */
  async function cleanNow() {
    if (kind === 'production') return cli(['cleanup'], { CLEANER_GRACE: '0' });
    await server.stop();
    try {
      return await cli(['cleanup', '--offline'], { CLEANER_GRACE: '0' });
    } finally {
      server = await startServerProcess(d.env);
    }
  }

  it('orphans: reported once past CLEANER_GRACE, removed by --repair or the cleaner; keys outside the layout untouched', async () => {
    // What earlier tests' repairs handed to the cleaner (the corrupt object given up) goes first.
    expect((await cleanNow()).code).toBe(0);
    const orphan = blobKey(sha(randomBytes(8)), 2);
    await stores.blobs.put(orphan, Readable.from([Buffer.from('left by a crash')]), {});
    await stores.blobs.put('backups/not-a-blob', Readable.from([Buffer.from('mine')]), {});
    expect((await cli(['fsck'])).code).toBe(0); // younger than CLEANER_GRACE: an upload in flight
    const run = await cli(['fsck'], { CLEANER_GRACE: '0' });
    expect(run.code, run.output).toBe(1);
    expect(run.stdout).toContain('1 objects without metadata, older than CLEANER_GRACE');
    const dry = await cli(['cleanup', '--dry-run'], { CLEANER_GRACE: '0' });
    expect(dry.code, dry.output).toBe(0);
    expect(dry.stdout).toContain(`orphan\t${orphan}\t15`);
    expect(dry.stdout).toMatch(/would delete 0 unreferenced blobs and 1 objects without metadata/);
    expect(await stores.blobs.stat(orphan)).not.toBeNull();
    const repaired = await repair();
    expect(repaired.code, repaired.output).toBe(0);
    expect(await stores.blobs.stat(orphan)).not.toBeNull(); // --repair, like the cleaner, waits out the grace
    const now =
      kind === 'production' ? await cli(['fsck', '--repair'], { CLEANER_GRACE: '0' }) : null;
    if (now) expect(now.stdout).toContain('1 orphans removed');
    else {
      await server.stop();
      const offline = await cli(['cleanup', '--offline'], { CLEANER_GRACE: '0' });
      server = await startServerProcess(d.env);
      expect(offline.code, offline.output).toBe(0);
    }
    expect(await stores.blobs.stat(orphan)).toBeNull();
    expect(await stores.blobs.stat('backups/not-a-blob')).not.toBeNull();
    await stores.blobs.delete('backups/not-a-blob');
    await consistent();
  });

  it('cleanup beside a running server: refused with in-process locks, done with PostgreSQL ones', async () => {
    const run = await cli(['cleanup']);
    if (kind === 'embedded') {
      expect(run.code).toBe(2);
      expect(run.output).toMatch(/LOCKS_TYPE=memory .* --offline/);
    } else {
      expect(run.code, run.output).toBe(0);
      expect(run.stdout).toMatch(/^deleted \d+ unreferenced blobs/m);
    }
  });

  it('cleanup while another instance cleans: exit 3, nothing done', async () => {
    if (kind !== 'production') return;
    const { PostgresLockManager } = await import('../../src/locks/postgres.js');
    const { createPool } = await import('../../src/postgres/pool.js');
    const pino = (await import('pino')).default;
    const pool = createPool(
      {
        connectionString: d.env.DATABASE_URL,
        max: 2,
        queryTimeoutMs: 0,
        connectTimeoutMs: 5000,
        applicationName: 'another-instance',
      },
      pino({ level: 'silent' }),
    );
    const locks = new PostgresLockManager(pool, pool, pino({ level: 'silent' }));
    const other = locks.session();
    try {
      await other.acquire('cleaner', 'exclusive', { timeoutMs: 1000 });
      const run = await cli(['cleanup']);
      expect(run.code, run.output).toBe(3);
      expect(run.stdout).toContain('another instance is cleaning; nothing done');
    } finally {
      await other.end();
      await locks.close();
      await pool.end();
    }
    expect((await cli(['cleanup'])).code).toBe(0);
  });

  it('every command says what it does, its options and its exit codes', async () => {
    for (const command of ['cleanup', 'fsck', 'stats']) {
      const help = await runCli([command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(/--config <file>/);
      expect(help.stdout).toMatch(/--env/);
      expect(help.stdout).toMatch(/Exit codes: 0 /);
    }
    expect((await runCli(['fsck', '--help'])).stdout).toMatch(/--deep[\s\S]*--repair/);
    expect((await runCli(['cleanup', '--help'])).stdout).toMatch(/--dry-run/);
  });
});
