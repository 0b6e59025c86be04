/**
 * Cost growth (SPEC §9, issue #14 part 3): does a PUT, GET, HEAD or /list
 * cost the same in a store of 1,000,000 files as in one of 1,000? Run by
 * `npm run bench` after the throughput scenarios, or alone with
 * `npm run bench:scale`.
 *
 * For each metadata store (SQLite, PostgreSQL) two deployments are filled,
 * untimed, by the bulk loader below: 1,000 and 1,000,000 files in
 * directories of 100 (so 10 and 10,000 directories), sharing 1,000 distinct
 * 1 KiB contents, plus directories of 10 and 1,000 files for the /list
 * proportionality check. Both servers (the CLI, started as operators start
 * it, filesystem store) run side by side and are measured in alternating
 * rounds, so a slower moment of the machine falls on both. Requests go one
 * at a time (latency, not throughput): GET and HEAD of files picked at
 * random in the 100-entry directories, PUT of new 1 KiB contents into
 * directories of their own, /list of random 100-entry directories.
 *
 * The figures go to the "Cost growth" section of docs/benchmarks.md
 * (between its markers). Environment: BENCH_SCALE_FILES (1000000),
 * BENCH_SCALE_BASE (1000), BENCH_SCALE_REQUESTS (400 per operation and
 * round), BENCH_SCALE_ROUNDS (3), BENCH_SCALE_STORES (sqlite,postgres),
 * BENCH_DOCS (report path; empty = none).
 */
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { Pool } from 'undici';
import { FilesystemBlobStore } from '../src/blobstore/filesystem.js';
import { blobKey } from '../src/dedup/keys.js';
import { writeSection } from './docs.js';
import { describeMachine, machineLines } from './machine.js';
import { type Payload, REQUESTS_HEADERS, smallPayloads } from './payloads.js';
import {
  ROOT,
  runBench,
  type ServerProcess,
  startPostgresServer,
  startServer,
  tempDir,
} from './services.js';
import { median, percentile } from './stats.js';
import { FiletrackerTarget } from './targets.js';

const START = '<!-- scale bench: start (written by `npm run bench:scale`) -->';
const END = '<!-- scale bench: end -->';
/** Files per ordinary directory; /list is measured on these. */
const PER_DIR = 100;
/** The extra directories, to show /list costing the directory's size. */
const SIZED_DIRS = [10, 1000] as const;
const KEY_DEPTH = 2;
/** Latencies at the large scale may be at most this many times those at the small one. */
const GROWTH_LIMIT = 1.5;

type MetaStore = 'sqlite' | 'postgres';
type Op = 'PUT' | 'GET' | 'HEAD' | 'list (100 entries)';
const OPS: Op[] = ['PUT', 'GET', 'HEAD', 'list (100 entries)'];

const envInt = (name: string, fallback: number) => {
  const v = process.env[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < PER_DIR || n % PER_DIR !== 0)
    throw new Error(`${name} must be a whole multiple of ${PER_DIR}, not "${v}"`);
  return n;
};

const log = (line: string) => process.stdout.write(`${line}\n`);

interface Deployment {
  store: MetaStore;
  files: number;
  dirs: number;
  server: ServerProcess;
  target: FiletrackerTarget;
  pool: Pool;
  loadSeconds: number;
  dbBytes: () => Promise<number>;
  /** Latencies (ms) of every measured request, by operation, all rounds together. */
  latencies: Map<Op, number[]>;
  /** /list latencies by directory size. */
  listBySize: Map<number, number[]>;
  /** Files the measured PUTs added. */
  added: number;
  close: () => Promise<void>;
}

/** Where file number `i` of an ordinary directory lives, and which content it has. */
const dirName = (d: number) => `scale/d${String(d).padStart(5, '0')}`;
const fileName = (f: number) => `f${String(f).padStart(4, '0')}`;

/**
 * Every file of the layout in path order (what a B-tree loads fastest),
 * with the index of its content. Contents go round-robin, so each of the
 * distinct contents is shared by files all over the store.
 */
function* layout(dirs: number, contents: number): Generator<[string, number]> {
  let i = 0;
  for (let d = 0; d < dirs; d++)
    for (let f = 0; f < PER_DIR; f++) yield [`${dirName(d)}/${fileName(f)}`, i++ % contents];
  for (const size of SIZED_DIRS)
    for (let f = 0; f < size; f++) yield [`sized/n${size}/${fileName(f)}`, i++ % contents];
}

/**
 * The bulk loader: blob files through the project's own filesystem store
 * (the same keys and bytes a PUT leaves), rows straight into the schema the
 * server created. Blobs go in unreferenced, then every count is set from
 * the files rows, so refcounts and the kept totals (triggers) are what the
 * server itself would have written.
 */
async function bulkLoad(
  store: MetaStore,
  where: { blobs: string; sqlite: string; postgresUrl?: string },
  dirs: number,
  contents: Payload[],
  version: number,
): Promise<void> {
  const blobs = await FilesystemBlobStore.open(where.blobs);
  for (const c of contents) await blobs.put(blobKey(c.sha256, KEY_DEPTH), c.body);
  await blobs.close();
  const now = Date.now();
  if (store === 'sqlite') {
    const db = new Database(where.sqlite);
    try {
      const blob = db.prepare(
        `INSERT INTO blobs (hash, refcount, logical_size, stored_size, zero_since, created_at)
         VALUES (?, 0, ?, ?, ?, ?)`,
      );
      const file = db.prepare(
        'INSERT INTO files (path, hash, version, updated_at) VALUES (?, ?, ?, ?)',
      );
      db.transaction(() => {
        for (const c of contents) blob.run(c.sha256, c.logicalSize, c.body.length, now, now);
        for (const [path, content] of layout(dirs, contents.length))
          file.run(path, contents[content]?.sha256, version, now);
        db.exec(`UPDATE blobs SET zero_since = NULL,
                   refcount = (SELECT count(*) FROM files WHERE files.hash = blobs.hash)`);
      })();
    } finally {
      db.close();
    }
    return;
  }
  const client = new pg.Client({ connectionString: where.postgresUrl });
  await client.connect();
  try {
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO blobs (hash, refcount, logical_size, stored_size, zero_since, created_at)
       SELECT h, 0, l, s, $4, $4 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS t(h, l, s)`,
      [
        contents.map((c) => c.sha256),
        contents.map((c) => c.logicalSize),
        contents.map((c) => c.body.length),
        now,
      ],
    );
    // In batches of one array parameter each: 1,000,000 rows in a few statements.
    let batch: string[] = [];
    let hashes: string[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      await client.query(
        `INSERT INTO files (path, hash, version, updated_at)
         SELECT p, h, $3, $4 FROM unnest($1::text[], $2::text[]) AS t(p, h)`,
        [batch, hashes, version, now],
      );
      batch = [];
      hashes = [];
    };
    for (const [path, content] of layout(dirs, contents.length)) {
      batch.push(path);
      hashes.push(contents[content]?.sha256 ?? '');
      if (batch.length === 50_000) await flush();
    }
    await flush();
    await client.query(
      `UPDATE blobs SET zero_since = NULL, refcount = c.n
         FROM (SELECT hash, count(*) AS n FROM files GROUP BY hash) c WHERE blobs.hash = c.hash`,
    );
    await client.query('COMMIT');
    // What autovacuum would do soon after such a load: the planner sees the real table sizes.
    await client.query('VACUUM ANALYZE files');
    await client.query('VACUUM ANALYZE blobs');
  } finally {
    await client.end();
  }
}

async function adminQuery<T extends pg.QueryResultRow>(url: string, sql: string): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<T>(sql)).rows;
  } finally {
    await client.end();
  }
}

async function deploy(
  store: MetaStore,
  files: number,
  contents: Payload[],
  version: number,
  postgresUrl: string | undefined,
): Promise<Deployment> {
  const dir = tempDir(`scale-${store}-${files}`);
  const env: Record<string, string> = {
    STORAGE_TYPE: 'filesystem',
    STORAGE_PATH: join(dir.path, 'blobs'),
    KVSTORAGE_TYPE: 'sqlite',
    SQLITE_PATH: join(dir.path, 'kv.db'),
    TEMP_DIR: join(dir.path, 'tmp'),
  };
  let database: string | undefined;
  let databaseUrl: string | undefined;
  if (store === 'postgres') {
    if (!postgresUrl) throw new Error('no PostgreSQL server');
    database = `scale_${process.pid}_${files}`;
    await adminQuery(postgresUrl, `CREATE DATABASE ${database}`);
    const url = new URL(postgresUrl);
    url.pathname = `/${database}`;
    databaseUrl = url.toString();
    Object.assign(env, {
      KVSTORAGE_TYPE: 'postgres',
      LOCKS_TYPE: 'postgres',
      DATABASE_URL: databaseUrl,
    });
  }
  const dropDatabase = async () => {
    if (database && postgresUrl)
      await adminQuery(postgresUrl, `DROP DATABASE IF EXISTS ${database}`).catch(() => []);
  };
  try {
    // The server applies its schema at start-up; the loader then fills it, the server stopped.
    await (await startServer(env)).stop();
    const dirs = files / PER_DIR;
    const t0 = performance.now();
    const where = {
      blobs: env.STORAGE_PATH ?? '',
      sqlite: env.SQLITE_PATH ?? '',
      ...(databaseUrl ? { postgresUrl: databaseUrl } : {}),
    };
    await bulkLoad(store, where, dirs, contents, version);
    const loadSeconds = (performance.now() - t0) / 1000;
    log(`  ${store}: ${files.toLocaleString('en')} files loaded in ${loadSeconds.toFixed(1)} s`);
    const server = await startServer(env);
    const dbBytes = async () => {
      if (store === 'sqlite') {
        const size = (p: string) => (existsSync(p) ? statSync(p).size : 0);
        return size(where.sqlite) + size(`${where.sqlite}-wal`);
      }
      const rows = await adminQuery<{ size: string }>(
        databaseUrl ?? '',
        'SELECT pg_database_size(current_database()) AS size',
      );
      return Number(rows[0]?.size ?? Number.NaN);
    };
    return {
      store,
      files,
      dirs,
      server,
      target: new FiletrackerTarget(server.url, version, 1),
      pool: new Pool(server.url, { connections: 1, pipelining: 1, keepAliveTimeout: 60_000 }),
      loadSeconds,
      dbBytes,
      latencies: new Map(OPS.map((op) => [op, []])),
      listBySize: new Map(),
      added: 0,
      close: async () => {
        await server.stop();
        await dropDatabase();
        dir.remove();
      },
    };
  } catch (err) {
    await dropDatabase();
    dir.remove();
    throw err;
  }
}

const pick = (n: number) => Math.floor(Math.random() * n);
let newFiles = 0;

/** A random stored file: any of the ordinary directories, any of its entries. */
function randomFile(d: Deployment): string {
  return `${dirName(pick(d.dirs))}/${fileName(pick(PER_DIR))}`;
}

async function head(d: Deployment, path: string): Promise<void> {
  const res = await d.pool.request({
    method: 'HEAD',
    path: `/files/${path}`,
    headers: REQUESTS_HEADERS,
  });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`HEAD /files/${path}: HTTP ${res.statusCode}`);
}

async function list(d: Deployment, dir: string, entries: number): Promise<void> {
  const res = await d.pool.request({
    method: 'GET',
    path: `/list/${dir}/`,
    headers: REQUESTS_HEADERS,
  });
  const text = await res.body.text();
  const lines = text.split('\n').filter((l) => l !== '').length;
  if (res.statusCode !== 200 || lines !== entries)
    throw new Error(`/list/${dir}/: HTTP ${res.statusCode}, ${lines} lines, expected ${entries}`);
}

async function timed(into: number[], op: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  await op();
  into.push(performance.now() - t0);
}

/**
 * One round on one deployment: `count` of each operation, one at a time.
 * GETs check every byte against the content the loader stored there, lists
 * check the number of entries.
 */
async function round(
  d: Deployment,
  count: number,
  contents: Payload[],
  fresh: () => Payload,
  record: boolean,
): Promise<void> {
  const sink = (op: Op) => (record ? (d.latencies.get(op) ?? []) : []);
  for (let i = 0; i < count; i++) {
    // New files go to directories of their own (as many as the loaded ones), so
    // the listed directories keep exactly the entries the loader gave them.
    const dir = `new/${String(pick(d.dirs)).padStart(5, '0')}`;
    await timed(sink('PUT'), () => d.target.put(`${dir}/new-${newFiles++}`, fresh()));
    d.added++;
  }
  for (let i = 0; i < count; i++) {
    const dirIndex = pick(d.dirs);
    const f = pick(PER_DIR);
    // The content of a file follows from its place in the layout (see layout()).
    const content = contents[(dirIndex * PER_DIR + f) % contents.length];
    if (!content) throw new Error('no content');
    await timed(sink('GET'), () => d.target.get(`${dirName(dirIndex)}/${fileName(f)}`, content));
  }
  for (let i = 0; i < count; i++) await timed(sink('HEAD'), () => head(d, randomFile(d)));
  for (let i = 0; i < count / 4; i++) {
    const dir = dirName(pick(d.dirs));
    await timed(sink('list (100 entries)'), () => list(d, dir, PER_DIR));
  }
  for (const size of [SIZED_DIRS[0], PER_DIR, SIZED_DIRS[1]]) {
    const times = d.listBySize.get(size) ?? [];
    if (record) d.listBySize.set(size, times);
    const dir = size === PER_DIR ? dirName(0) : `sized/n${size}`;
    for (let i = 0; i < 10; i++) await timed(record ? times : [], () => list(d, dir, size));
  }
}

interface Result {
  store: MetaStore;
  op: Op;
  small: number[];
  large: number[];
}

interface Footprint {
  store: MetaStore;
  files: number;
  loadSeconds: number;
  dbMb: number;
  peakRssMb: number;
}

interface ScaleConfig {
  files: number;
  base: number;
  requests: number;
  rounds: number;
  stores: MetaStore[];
}

async function measure(
  store: MetaStore,
  config: ScaleConfig,
  contents: Payload[],
  fresh: () => Payload,
  postgresUrl: string | undefined,
): Promise<{ results: Result[]; footprints: Footprint[]; lists: Map<number, number[]> }> {
  const version = Math.floor(Date.now() / 1000);
  const small = await deploy(store, config.base, contents, version, postgresUrl);
  try {
    const large = await deploy(store, config.files, contents, version, postgresUrl);
    try {
      // Unrecorded: the JIT and both databases' caches warm up before anything counts.
      for (const d of [small, large]) await round(d, 100, contents, fresh, false);
      for (let r = 0; r < config.rounds; r++) {
        for (const d of r % 2 === 0 ? [small, large] : [large, small]) {
          await round(d, config.requests, contents, fresh, true);
        }
        log(`  ${store}: round ${r + 1}/${config.rounds} done`);
      }
      const results = OPS.map((op) => ({
        store,
        op,
        small: sorted(small.latencies.get(op)),
        large: sorted(large.latencies.get(op)),
      }));
      const footprints: Footprint[] = [];
      for (const d of [small, large]) {
        footprints.push({
          store,
          files: d.files + SIZED_DIRS.reduce((a, b) => a + b, 0) + d.added,
          loadSeconds: d.loadSeconds,
          dbMb: (await d.dbBytes()) / 1e6,
          peakRssMb: d.server.peakRss() / 1e6,
        });
      }
      const lists = new Map([...large.listBySize].map(([size, t]) => [size, sorted(t)]));
      return { results, footprints, lists };
    } finally {
      await large.close();
    }
  } finally {
    await small.close();
  }
}

const sorted = (values: number[] | undefined) => [...(values ?? [])].sort((a, b) => a - b);
const ms = (v: number) => (v < 10 ? v.toFixed(2) : v.toFixed(1));

function report(
  config: ScaleConfig,
  measured: Awaited<ReturnType<typeof measure>>[],
  machine: string[],
  startedAt: string,
): { text: string; unmet: string[] } {
  const unmet: string[] = [];
  const big = config.files.toLocaleString('en');
  const little = config.base.toLocaleString('en');
  const latencyRows: string[] = [];
  for (const m of measured) {
    for (const r of m.results) {
      const cells = [50, 99].flatMap((p) => {
        const a = percentile(r.small, p);
        const b = percentile(r.large, p);
        const ratio = b / a;
        if (ratio > GROWTH_LIMIT) unmet.push(`${r.store} ${r.op} p${p}: ${ratio.toFixed(2)}x`);
        return [ms(a), ms(b), `${ratio.toFixed(2)}×`];
      });
      latencyRows.push(`| ${r.store} | ${r.op} | ${cells.join(' | ')} |`);
    }
  }
  const listRows: string[] = [];
  for (const m of measured) {
    const fixed = median(m.lists.get(SIZED_DIRS[0]) ?? []);
    for (const [size, times] of [...m.lists].sort((a, b) => a[0] - b[0])) {
      const p50 = median(times);
      // The cost of a request with no entries is not the directory's: what grows is the rest.
      const perEntry =
        size === SIZED_DIRS[0] ? '' : (((p50 - fixed) * 1000) / (size - SIZED_DIRS[0])).toFixed(1);
      listRows.push(
        `| ${m.results[0]?.store} | ${size.toLocaleString('en')} | ${ms(p50)} | ${perEntry} |`,
      );
    }
  }
  const footprintRows = measured.flatMap((m) =>
    m.footprints.map(
      (f) =>
        `| ${f.store} | ${f.files.toLocaleString('en')} | ${f.loadSeconds.toFixed(1)} | ${f.dbMb.toFixed(1)} | ${f.peakRssMb.toFixed(0)} |`,
    ),
  );
  const text = `${START}

## Cost growth (\`npm run bench:scale\`, also run by \`npm run bench\`)

Measured on ${startedAt} UTC. Machine: ${machine.join('; ')}.

Two deployments per metadata store, filled untimed by the bench's bulk
loader (\`bench/scale.ts\`: blob files through the filesystem store's own
code, rows into the schema the server created, refcounts and kept totals
as the server keeps them): ${little} and ${big} files in directories of
${PER_DIR}, sharing 1,000 distinct 1 KiB contents, plus directories of
${SIZED_DIRS.map((n) => n.toLocaleString('en')).join(' and ')} files. Both servers (the CLI, filesystem store)
run side by side and are measured in alternating rounds (${config.rounds}) of
${config.requests} requests per operation (lists: a quarter of that), one
request at a time, after an unrecorded warm-up round. GET and HEAD pick
files at random among those of the 100-entry directories; PUTs store new
1 KiB contents in as many directories of their own (the listed ones keep
their size). The blob store holds the same 1,000 contents at both sizes, so
what grows is the metadata. Target (SPEC §9): latencies at ${big} files
within ${GROWTH_LIMIT}× of those at ${little}${unmet.length === 0 ? ': met on every row' : `; not met: ${unmet.join(', ')}`}.

| Metadata | Operation | p50 at ${little} (ms) | p50 at ${big} (ms) | ratio | p99 at ${little} (ms) | p99 at ${big} (ms) | ratio |
|---|---|---:|---:|---:|---:|---:|---:|
${latencyRows.join('\n')}

\`/list\` at ${big} files costs the directory listed, not the store
(median of ${10 * config.rounds} lists each):

| Metadata | Entries listed | p50 (ms) | µs per entry beyond the first ${SIZED_DIRS[0]} |
|---|---:|---:|---:|
${listRows.join('\n')}

Footprint (database size while the server runs, peak RSS of the server
over the whole measurement; files include those the measured PUTs added):

| Metadata | Files | Bulk load (s) | Database (MB) | Peak RSS (MB) |
|---|---:|---:|---:|---:|
${footprintRows.join('\n')}

${END}`;
  return { text, unmet };
}

async function main(): Promise<void> {
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js')))
    throw new Error('dist/cli/main.js is missing: run `npm run build` first');
  const rawStores = process.env.BENCH_SCALE_STORES || 'sqlite,postgres';
  const stores = rawStores.split(',').map((s) => s.trim());
  for (const s of stores)
    if (s !== 'sqlite' && s !== 'postgres')
      throw new Error(`BENCH_SCALE_STORES: unknown store "${s}" (known: sqlite, postgres)`);
  const config: ScaleConfig = {
    files: envInt('BENCH_SCALE_FILES', 1_000_000),
    base: envInt('BENCH_SCALE_BASE', 1000),
    requests: Number(process.env.BENCH_SCALE_REQUESTS || 400),
    rounds: Number(process.env.BENCH_SCALE_ROUNDS || 3),
    stores: stores as MetaStore[],
  };
  if (!(config.requests >= 4 && config.rounds >= 1))
    throw new Error('BENCH_SCALE_REQUESTS must be at least 4 and BENCH_SCALE_ROUNDS at least 1');
  const machine = machineLines(describeMachine());
  const startedAt = new Date().toISOString().slice(0, 16).replace('T', ' ');
  log('s3dedup cost-growth benchmark (SPEC §9)');
  log(`  ${config.base} vs ${config.files} files on ${config.stores.join(', ')}`);
  const contents = await smallPayloads(1000, 1024, 'scale');
  // Every measured PUT stores a new content: 2 deployments x (warm-up + rounds) per store.
  const perStore = 2 * (100 + config.rounds * config.requests);
  const freshSet = await smallPayloads(perStore * config.stores.length, 1024, 'scale-put');
  let next = 0;
  const fresh = () => {
    const p = freshSet[next++];
    if (!p) throw new Error('ran out of new contents');
    return p;
  };
  const postgres = config.stores.includes('postgres') ? await startPostgresServer() : undefined;
  const measured = [];
  for (const store of config.stores)
    measured.push(await measure(store, config, contents, fresh, postgres?.url));
  const { text, unmet } = report(config, measured, machine, startedAt);
  log(text.replace(START, '').replace(END, '').trim());
  log(`Targets: ${unmet.length === 0 ? 'all met' : `NOT MET: ${unmet.join(', ')}`}`);
  const written = writeSection(ROOT, { start: START, end: END }, text);
  if (written) log(`written to ${written}`);
}

runBench('scale benchmark', main);
