import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BenchConfig } from './config.js';
import { type MachineInfo, machineLines } from './machine.js';
import { CPU_TITLES, markdownTable, type Row, resultTables, scenarioLabels } from './report.js';

/**
 * docs/benchmarks.md: how the figures were measured, on what, and the tables.
 * The part above the marker is rewritten by every run; notes below it (the
 * analysis a person writes) are kept.
 */

/** Everything above this line in docs/benchmarks.md is rewritten; what follows is kept. */
const KEEP_MARKER =
  '<!-- Everything above this line is written by `npm run bench`; notes below it are kept. -->';

export interface ReportInput {
  /** The project folder (for its formatter). */
  root: string;
  config: BenchConfig;
  machine: MachineInfo;
  rows: Row[];
  cpuRows: string[][];
  startedAt: Date;
  durationS: number;
}

function generated(r: ReportInput): string {
  const { config, machine } = r;
  const { small, medium, large } = config;
  const labels = scenarioLabels(config);
  const table = resultTables(r.rows);
  const unmet = r.rows.filter((row) => row.met === 'NOT MET');
  const when = r.startedAt.toISOString().slice(0, 16).replace('T', ' ');
  const verdict =
    unmet.length === 0
      ? 'all targets measured here (SPEC §9 and the issues) are met.'
      : `${unmet.length} of the targets measured here (SPEC §9 and the issues) are not met (see the notes at the end).`;
  return `# Benchmarks

Written by \`npm run bench\` (\`bench/\`) on ${when} UTC: ${config.runs} runs,
${Math.round(r.durationS)} s in all; ${verdict}

## How measured

- **Everything on one machine.** The benchmark starts a throw-away Ceph
  cluster (one monitor, one memstore OSD, one radosgw, from
  \`test/services/ceph-cluster.sh\`) and, for every scenario and store, a fresh
  s3dedup server process (\`dist/cli/main.js server\` with the Node flags of
  its shebang, SQLite metadata, default settings, cleaner off). Client,
  server, radosgw and OSD share the same ${machine.cores} cores, so every
  figure includes that CPU contention (the CPU table shows how busy each
  process was).
- **Targets.** \`filesystem\`: s3dedup with blobs in a folder on the local
  disk. \`s3 (radosgw)\`: s3dedup with blobs in a bucket of the radosgw.
  **Baseline**: the same payloads PUT and GET directly to the same radosgw with
  the AWS SDK, in the same run. \`nginx (plain file server)\`: Debian's nginx
  on the same disk (\`dav_methods PUT DELETE\`, \`create_full_put_path on\`,
  \`sendfile on\`, a \`/version\` location, \`worker_processes auto\`, access log
  off), receiving and serving the same requests from the same client: the
  filesystem store's reference, a server that stores the client's bytes
  without checking or fsyncing them (scenarios a-c; "vs nginx" rows).
  \`bare relay to radosgw\` (scenario b only): \`bench/relay.ts\`, a Node
  server that reads a PUT's body whole and sends it with one PutObject, and
  pipes GetObject back, with the S3 client set up as s3dedup's; no checks, no
  metadata; it signs uploads as s3dedup does (\`BENCH_S3_PAYLOAD_SIGNING\`
  sets both). It is the floor for s3dedup's CPU per byte through S3: the
  "server CPU s/GB" rows are the server process's CPU seconds per 10^9 body
  bytes moved, a figure that depends much less on the two cores' contention
  than MB/s does (target for s3dedup on S3: at most 1.3x the relay's).
  Within a scenario the targets go in an order that rotates from run to run.
- **Requests** are shaped like the Python Filetracker client's: gzip level 9
  body, \`SHA256-Checksum\`, \`Logical-Size\`, \`last_modified\` as a
  urlencoded RFC 2822 date, python-requests' headers, keep-alive connections;
  GETs receive the stored gzip bytes. The client hashes and checks every body
  it receives (length and SHA-256), on the s3dedup and the baseline side
  alike. Each target first gets ${small.warmup} small PUTs and GETs as a warm-up.
- **Scenarios.** (${labels.small}) distinct text files: PUT all, then GET all;
  ops/s and per-request latency. (${labels.medium}) distinct random
  (incompressible) files; MB/s of body bytes (10^6 bytes/s). (${labels.large})
  a multi-member gzip of incompressible 1 MiB blocks, generated while it is
  sent; the baseline uploads it both as one streamed PutObject with its length
  and as an SDK multipart upload (${large.partSize / 1024 ** 2} MiB parts,
  ${large.partsInFlight} in flight); GET is a streamed GetObject.
  (${labels.dedup}) the ${medium.count} files uploaded once, then again to new
  paths (timed); the S3 store's server reaches radosgw through a counting HTTP
  proxy that tallies every request S3 receives, by method. Its baseline is a
  plain upload of the same files (S3 does not deduplicate).
  (${labels.postgres}) the small-file workload of (a) on the multi-instance
  deployment: PostgreSQL metadata and advisory locks (\`KVSTORAGE_TYPE\` and
  \`LOCKS_TYPE=postgres\`, a throw-away PostgreSQL server from
  \`test/services/postgres.sh\` on the same machine, a fresh database each
  time) and one shared bucket, with one instance and with three; the same
  again over one shared blob folder instead of the bucket, which shows what
  PostgreSQL costs without radosgw's latency in every request. With three,
  request i goes to instance i mod 3 (as a load balancer would spread it), so
  files are often read through another instance than the one that wrote them.
  CPU "server" is then the three instances together, and peak RSS the
  largest of them. SPEC §9 sets no target for it.
  (${labels.hot}) the ${medium.count} files of (b) and the ${small.count} of (a)
  uploaded (not timed), then read again and again, as judging machines read
  a problem's tests for every submission; the first pass and the later ones
  are reported apart. \`s3 (radosgw) + CACHE_DIR\` is the S3 store with the
  blob cache on (\`docs/blob-cache.md\`, default size, on the same disk as
  the filesystem store): its first pass fills the cache, the later ones hit.
  Hot reads are compared with the filesystem store's (target 0.9x), first
  reads with the S3 store's without the cache (target 1.0x).
- **Memory**: peak RSS (VmHWM from \`/proc/PID/status\`) of the server
  process, which is restarted for every scenario so each peak is that
  scenario's own (warm-up included).
- **Statistics**: medians of the ${config.runs} runs; a ratio is the median of
  each run's value divided by that run's baseline, or nginx's in the "vs
  nginx" rows (for latencies lower is better). Counts that must always hold are shown for the worst run.
- After each scenario its bucket is emptied and deleted and radosgw's garbage
  collector is run; the benchmark checks that no object is left, so the
  in-memory cluster never holds more than one scenario's data.

## Machine

${machineLines(machine)
  .map((l) => `- ${l}`)
  .join('\n')}

## Results

${markdownTable(table.titles, table.cells, table.right)}

## CPU use per phase

Cores kept busy during each timed phase (1.00 = one core all the time),
median over runs. "bench client" is the benchmark process (it also runs the
counting proxy in scenario d); "whole machine" is every process together,
out of ${machine.cores}.

${markdownTable(
  CPU_TITLES,
  r.cpuRows,
  CPU_TITLES.map((_, i) => i >= 3),
)}

${KEEP_MARKER}
`;
}

/** Writes the report, keeping whatever notes follow the marker in the existing file. */
export function writeReport(path: string, input: ReportInput): void {
  let notes = '\n## Notes\n\n(Analysis of the figures above goes here; it is kept across runs.)\n';
  if (existsSync(path)) {
    const old = readFileSync(path, 'utf8');
    const at = old.indexOf(KEEP_MARKER);
    if (at >= 0) notes = old.slice(at + KEEP_MARKER.length);
  }
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, generated(input) + notes.replace(/^\n*/, '\n'));
  formatMarkdown(input.root, path);
}

/**
 * The project's formatter owns Markdown too (`biome check .` covers docs/):
 * it lays the tables out, so a fresh report passes the lint as written.
 */
export function formatMarkdown(root: string, path: string): void {
  try {
    execFileSync(join(root, 'node_modules', '.bin', 'biome'), ['format', '--write', path], {
      cwd: root,
      stdio: 'ignore',
    });
  } catch {
    process.stderr.write(`note: could not format ${path} with biome\n`);
  }
}

/**
 * Puts `text` (which starts with `start` and ends with `end`) in place of
 * the section between those markers in the report (BENCH_DOCS, by default
 * docs/benchmarks.md; empty = none), or appends it; the rest of the file is
 * left as it is. The separate benches (migration, scale, ftload) each own
 * one such section. Returns the path written, if any.
 */
export function writeSection(
  root: string,
  markers: { start: string; end: string },
  text: string,
): string | undefined {
  const path = process.env.BENCH_DOCS ?? join(root, 'docs', 'benchmarks.md');
  if (path === '') return undefined;
  const current = existsSync(path) ? readFileSync(path, 'utf8') : '';
  const start = current.indexOf(markers.start);
  const end = current.indexOf(markers.end);
  const next =
    start >= 0 && end > start
      ? `${current.slice(0, start)}${text}${current.slice(end + markers.end.length)}`
      : `${current.trimEnd()}\n\n${text}\n`;
  writeFileSync(path, next);
  formatMarkdown(root, path);
  return path;
}
