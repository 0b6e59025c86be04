/**
 * The operators' load shape beside the bench's own (issue #14 part 2):
 * `ftload.py` (../shared/tools beside the checkout, or BENCH_FTLOAD), Python
 * `requests` with one process per client, shaped like the Filetracker
 * client, run with its default scenarios against s3dedup on its defaults
 * (SQLite + filesystem store) and against nginx serving files from disk,
 * each freshly started for every run, in BENCH_FTLOAD_RUNS (3) interleaved
 * runs. Medians go to the "ftload.py" section of docs/benchmarks.md
 * (between its markers). Run by `npm run bench` after the throughput
 * scenarios, or alone with `npm run bench:ftload`; skipped with a message
 * when ftload.py or python3-requests is missing (it is not part of this
 * repository).
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { writeSection } from './docs.js';
import { type FtloadLine, parseFtload } from './ftload-output.js';
import { describeMachine, machineLines } from './machine.js';
import { ROOT, runBench, startNginx, startServer, tempDir } from './services.js';
import { median } from './stats.js';

const run = promisify(execFile);
const START = '<!-- ftload bench: start (written by `npm run bench:ftload`) -->';
const END = '<!-- ftload bench: end -->';

type Subject = 's3dedup' | 'nginx';
const SUBJECTS: Subject[] = ['s3dedup', 'nginx'];

const log = (line: string) => process.stdout.write(`${line}\n`);

async function ftload(script: string, url: string, subject: Subject): Promise<FtloadLine[]> {
  const args = [script, '--url', url, ...(subject === 'nginx' ? ['--any-2xx'] : [])];
  const { stdout } = await run('python3', args, { maxBuffer: 16 * 1024 * 1024 });
  const lines = parseFtload(stdout);
  const failed = lines.filter((l) => l.errors > 0 || l.ok !== l.count);
  if (lines.length === 0 || failed.length > 0)
    throw new Error(`ftload against ${subject} failed or printed no results:\n${stdout}`);
  return lines;
}

async function once(script: string, subject: Subject): Promise<FtloadLine[]> {
  const dir = tempDir(`ftload-${subject}`);
  try {
    if (subject === 'nginx') {
      const nginx = await startNginx(dir.path);
      try {
        return await ftload(script, nginx.url, subject);
      } finally {
        await nginx.stop();
      }
    }
    const server = await startServer({
      STORAGE_TYPE: 'filesystem',
      STORAGE_PATH: join(dir.path, 'blobs'),
      KVSTORAGE_TYPE: 'sqlite',
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
    });
    try {
      return await ftload(script, server.url, subject);
    } finally {
      await server.stop();
    }
  } finally {
    dir.remove();
  }
}

const key = (l: FtloadLine) => `${l.method} ${l.size} x ${l.count} c=${l.concurrency}`;

function report(
  runs: Map<Subject, FtloadLine[][]>,
  machine: string[],
  startedAt: string,
  count: number,
): string {
  const rows: string[] = [];
  const first = runs.get('s3dedup')?.[0] ?? [];
  for (const line of first) {
    const cells = SUBJECTS.map((s) => {
      const same = (runs.get(s) ?? []).map((r) => r.find((l) => key(l) === key(line)));
      const pick = (f: (l: FtloadLine) => number) =>
        median(same.filter((l): l is FtloadLine => l !== undefined).map(f));
      return {
        rate: line.size.endsWith('KiB')
          ? pick((l) => l.filesPerSecond)
          : pick((l) => l.mibPerSecond),
        p50: pick((l) => l.p50Ms),
      };
    });
    const [ours, nginx] = cells;
    const unit = line.size.endsWith('KiB') ? 'files/s' : 'MiB/s';
    rows.push(
      `| ${line.method} | ${line.size} × ${line.count}, c=${line.concurrency} | ${ours?.rate.toFixed(1)} ${unit} | ${ours?.p50.toFixed(1)} | ${nginx?.rate.toFixed(1)} ${unit} | ${nginx?.p50.toFixed(1)} | ${((ours?.rate ?? 0) / (nginx?.rate ?? 1)).toFixed(2)}× |`,
    );
  }
  return `${START}

## \`ftload.py\` (\`npm run bench:ftload\`, also run by \`npm run bench\`)

Measured on ${startedAt} UTC. Machine: ${machine.join('; ')}.

The load generator the operators' clients resemble (\`../shared/tools/ftload.py\`:
Python \`requests\`, gzip bodies with \`SHA256-Checksum\` and \`Logical-Size\`,
keep-alive, one process per client, random contents), default scenarios,
against s3dedup on its defaults (SQLite + filesystem store, verification and
fsyncs on) and nginx (WebDAV PUT into files, \`sendfile\` GETs, no checks, no
fsync), each started fresh for every run; medians of ${count} interleaved
runs. The Python clients share the 2 cores with the server, so a server's
CPU per request shows up as lower throughput for both.

| Phase | Load | s3dedup | p50 (ms) | nginx | p50 (ms) | s3dedup / nginx |
|---|---|---:|---:|---:|---:|---:|
${rows.join('\n')}

${END}`;
}

async function main(): Promise<void> {
  const script = resolve(
    process.env.BENCH_FTLOAD || join(ROOT, '..', 'shared', 'tools', 'ftload.py'),
  );
  if (!existsSync(script)) {
    log(`ftload.py not found at ${script} (set BENCH_FTLOAD): skipping the ftload.py comparison`);
    return;
  }
  const python = await run('python3', ['-c', 'import requests']).then(
    () => true,
    () => false,
  );
  if (!python) {
    log('python3-requests is not installed: skipping the ftload.py comparison');
    return;
  }
  const count = Number(process.env.BENCH_FTLOAD_RUNS || 3);
  if (!Number.isInteger(count) || count < 1)
    throw new Error('BENCH_FTLOAD_RUNS must be at least 1');
  const machine = machineLines(describeMachine());
  const startedAt = new Date().toISOString().slice(0, 16).replace('T', ' ');
  log(`ftload.py against s3dedup and nginx, ${count} runs`);
  const runs = new Map<Subject, FtloadLine[][]>(SUBJECTS.map((s) => [s, []]));
  for (let i = 0; i < count; i++) {
    // Alternate which goes first: the page cache and the machine's mood favour neither.
    for (const subject of i % 2 === 0 ? SUBJECTS : [...SUBJECTS].reverse()) {
      const lines = await once(script, subject);
      runs.get(subject)?.push(lines);
      log(
        `  run ${i + 1}/${count} ${subject}: ${lines.map((l) => `${key(l)} ${l.size.endsWith('KiB') ? `${l.filesPerSecond} files/s` : `${l.mibPerSecond} MiB/s`}`).join('; ')}`,
      );
    }
  }
  const text = report(runs, machine, startedAt, count);
  log(text.replace(START, '').replace(END, '').trim());
  const written = writeSection(ROOT, { start: START, end: END }, text);
  if (written) log(`written to ${written}`);
}

runBench('ftload benchmark', main);
