/**
 * `npm run bench:migration`: how fast `s3dedup migrate` copies from a local
 * V2 Filetracker (the project's fake, in this process), and how much memory
 * `migrate-v1` needs to walk and copy a V1 folder of 100,000 small files.
 * Each command runs under `/usr/bin/time -v` into a fresh embedded
 * deployment (SQLite + filesystem store, the defaults). The figures go to
 * the "Migration" section of docs/benchmarks.md (between its markers; the
 * rest of the file is `npm run bench`'s).
 *
 * Environment: BENCH_MIGRATION_SMALL (10000 files of 4 KiB),
 * BENCH_MIGRATION_LARGE (100 files of 4 MiB), BENCH_MIGRATION_V1 (100000
 * files of 100 bytes), BENCH_MIGRATION_CONCURRENCY (10, the default of
 * --max-concurrency), BENCH_DOCS (report path; empty = none).
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FakeFiletracker } from '../test/support/fake-filetracker.js';
import { cliNodeFlags } from '../test/support/process.js';
import { writeSection } from './docs.js';
import { describeMachine, machineLines } from './machine.js';
import { ROOT, runBench, tempDir } from './services.js';

const run = promisify(execFile);
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const START = '<!-- migration bench: start (written by `npm run bench:migration`) -->';
const END = '<!-- migration bench: end -->';

const envInt = (name: string, fallback: number) => {
  const v = process.env[name];
  return v === undefined || v === '' ? fallback : Number.parseInt(v, 10);
};

interface Measured {
  label: string;
  files: number;
  bytes: number;
  seconds: number;
  peakRssMb: number;
  summary: string;
}

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Runs the CLI (with its shebang's Node flags) under /usr/bin/time -v into a fresh embedded deployment. */
async function timed(
  label: string,
  args: string[],
  files: number,
  bytes: number,
): Promise<Measured> {
  const dir = tempDir('migration-bench');
  try {
    const env = {
      PATH: process.env.PATH ?? '',
      STORAGE_TYPE: 'filesystem',
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
      CLEANER_ENABLED: 'false',
      LOG_LEVEL: 'warn',
    };
    const { stdout, stderr } = await run(
      '/usr/bin/time',
      ['-v', process.execPath, ...cliNodeFlags(CLI), CLI, ...args],
      { env, maxBuffer: 64 * 1024 * 1024 },
    );
    const field = (name: string) => {
      const m = new RegExp(`${name}: (.+)`).exec(stderr)?.[1]?.trim();
      if (!m) throw new Error(`no "${name}" from /usr/bin/time:\n${stderr.slice(-2000)}`);
      return m;
    };
    const wall = field('Elapsed \\(wall clock\\) time \\(h:mm:ss or m:ss\\)')
      .split(':')
      .map(Number)
      .reduce((acc, part) => acc * 60 + part, 0);
    const measured = {
      label,
      files,
      bytes,
      seconds: wall,
      peakRssMb: Number(field('Maximum resident set size \\(kbytes\\)')) / 1024,
      summary: stdout.trim(),
    };
    log(
      `  ${label}: ${wall.toFixed(1)} s, ${(files / wall).toFixed(0)} files/s, ${(bytes / 2 ** 20 / wall).toFixed(1)} MiB/s, peak RSS ${measured.peakRssMb.toFixed(0)} MB`,
    );
    return measured;
  } finally {
    dir.remove();
  }
}

async function v2(count: number, size: number, concurrency: number, label: string) {
  const old = await new FakeFiletracker().start();
  try {
    // Distinct, incompressible contents: the copy's cost, not dedup's shortcut.
    for (let i = 0; i < count; i++)
      old.add(`bench/${i % 100}/${i}`, randomBytes(size), 1_234_567_890 + i);
    return await timed(
      label,
      ['migrate', '--filetracker-url', old.url, '--max-concurrency', String(concurrency)],
      count,
      count * size,
    );
  } finally {
    await old.stop();
  }
}

async function v1(count: number, size: number, concurrency: number) {
  const tree = tempDir('v1-tree');
  try {
    log(`  writing a V1 folder of ${count} files...`);
    for (let d = 0; d * 1000 < count; d++) {
      const folder = join(tree.path, 'files', `contest${d % 10}`, `problem${d}`);
      await mkdir(folder, { recursive: true });
      const files = Array.from({ length: Math.min(1000, count - d * 1000) }, (_, i) => i);
      await Promise.all(
        files.map(async (i) => {
          const file = join(folder, `${i}.in`);
          await writeFile(file, randomBytes(size));
          await utimes(file, new Date(1_234_567_890_000), new Date(1_234_567_890_000));
        }),
      );
    }
    return await timed(
      `migrate-v1, ${count} files of ${size} B`,
      ['migrate-v1', '--v1-directory', tree.path, '--max-concurrency', String(concurrency)],
      count,
      count * size,
    );
  } finally {
    tree.remove();
  }
}

function report(
  results: Measured[],
  concurrency: number,
  machine: string[],
  startedAt: string,
): string {
  const rows = results.map(
    (r) =>
      `| ${r.label} | ${r.seconds.toFixed(1)} | ${(r.files / r.seconds).toFixed(0)} | ${(r.bytes / 2 ** 20 / r.seconds).toFixed(1)} | ${r.peakRssMb.toFixed(0)} |`,
  );
  return `${START}

## Migration (\`npm run bench:migration\`)

Measured on ${startedAt} UTC. Each row is one
command run under \`/usr/bin/time -v\` into a fresh embedded deployment
(SQLite + filesystem store), \`--max-concurrency ${concurrency}\`. V2: from
the project's fake Filetracker (\`test/support/fake-filetracker.ts\`) in the
benchmark's own process on the same machine, serving distinct random
contents gzip-compressed as the original does; the time includes listing
the old server twice (a count for the progress bar, then the copy). V1: a
folder written just before. MiB/s counts the files' uncompressed bytes.
Machine: ${machine.join('; ')}.

| Command | Seconds | Files/s | MiB/s | Peak RSS (MB) |
|---|---:|---:|---:|---:|
${rows.join('\n')}

${END}`;
}

async function main(): Promise<void> {
  if (!existsSync(CLI)) throw new Error('dist/cli/main.js is missing: run `npm run build` first');
  const concurrency = envInt('BENCH_MIGRATION_CONCURRENCY', 10);
  const small = envInt('BENCH_MIGRATION_SMALL', 10_000);
  const large = envInt('BENCH_MIGRATION_LARGE', 100);
  const v1Count = envInt('BENCH_MIGRATION_V1', 100_000);
  const machine = machineLines(describeMachine());
  const startedAt = new Date().toISOString().slice(0, 16).replace('T', ' ');
  log('s3dedup migration benchmark');
  const results: Measured[] = [];
  results.push(await v2(small, 4096, concurrency, `migrate (V2), ${small} files of 4 KiB`));
  results.push(await v2(large, 4 * 2 ** 20, concurrency, `migrate (V2), ${large} files of 4 MiB`));
  results.push(await v1(v1Count, 100, concurrency));
  const text = report(results, concurrency, machine, startedAt);
  const written = writeSection(ROOT, { start: START, end: END }, text);
  if (written) log(`written to ${written}`);
}

runBench('migration benchmark', main);
