import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { BenchConfig, ScenarioId } from './config.js';
import { type MachineInfo, machineLines } from './machine.js';
import { type CpuSample, METRIC, type Metric, type Sample } from './scenarios.js';
import { median } from './stats.js';
import type { Store } from './subjects.js';

type Goal =
  | { kind: 'atLeast'; value: number }
  | { kind: 'atMost'; value: number }
  | { kind: 'ratioAtLeast'; value: number }
  | { kind: 'equals'; value: number };

interface RowSpec {
  scenario: ScenarioId;
  store: Exclude<Store, 'baseline'>;
  metric: Metric;
  /** Shown instead of the metric name (two rows may share a metric). */
  label?: string;
  /** The baseline's metric in the same scenario, when there is one to compare with. */
  baseline?: Metric;
  goal?: Goal;
  /** Counts that must hold in every run are judged on the worst run, not the median. */
  worstOfRuns?: boolean;
}

export interface Row {
  scenario: string;
  store: string;
  metric: string;
  median: string;
  range: string;
  baseline: string;
  ratio: string;
  target: string;
  met: string;
}

const COLUMNS: { key: keyof Row; title: string; right?: boolean }[] = [
  { key: 'scenario', title: 'Scenario' },
  { key: 'store', title: 'Store' },
  { key: 'metric', title: 'Metric' },
  { key: 'median', title: 'Median', right: true },
  { key: 'range', title: 'Runs (min-max)', right: true },
  { key: 'baseline', title: 'Baseline median', right: true },
  { key: 'ratio', title: 'Ratio', right: true },
  { key: 'target', title: 'Target' },
  { key: 'met', title: 'Met' },
];

/** SPEC §9 in rows: which figure is judged against what. */
function rowSpecs(): RowSpec[] {
  const rows: RowSpec[] = [];
  for (const store of ['filesystem', 's3'] as const) {
    const fs = store === 'filesystem';
    rows.push(
      {
        scenario: 'small',
        store,
        metric: METRIC.putOps,
        baseline: METRIC.putOps,
        ...(fs && { goal: { kind: 'atLeast', value: 1000 } as Goal }),
      },
      { scenario: 'small', store, metric: METRIC.putP50, baseline: METRIC.putP50 },
      { scenario: 'small', store, metric: METRIC.putP99, baseline: METRIC.putP99 },
      {
        scenario: 'small',
        store,
        metric: METRIC.getOps,
        baseline: METRIC.getOps,
        ...(fs && { goal: { kind: 'atLeast', value: 2500 } as Goal }),
      },
      { scenario: 'small', store, metric: METRIC.getP50, baseline: METRIC.getP50 },
      { scenario: 'small', store, metric: METRIC.getP99, baseline: METRIC.getP99 },
      { scenario: 'small', store, metric: METRIC.peakRss },
    );
  }
  // Proxy overhead (SPEC §9) is judged for the S3 store: it is the one that
  // sits in front of the same S3 server. The filesystem store's ratios are
  // shown for scale only.
  const proxyGoal = (store: Exclude<Store, 'baseline'>, value: number) =>
    store === 's3' ? { goal: { kind: 'ratioAtLeast', value } as Goal } : {};
  for (const store of ['filesystem', 's3'] as const) {
    rows.push(
      {
        scenario: 'medium',
        store,
        metric: METRIC.putMBs,
        baseline: METRIC.putMBs,
        ...proxyGoal(store, 0.8),
      },
      {
        scenario: 'medium',
        store,
        metric: METRIC.getMBs,
        baseline: METRIC.getMBs,
        ...proxyGoal(store, 0.9),
      },
      { scenario: 'medium', store, metric: METRIC.peakRss },
    );
  }
  for (const store of ['filesystem', 's3'] as const) {
    rows.push(
      {
        scenario: 'large',
        store,
        metric: METRIC.putMBs,
        label: 'PUT MB/s vs one streamed PutObject',
        baseline: METRIC.putMBs,
        ...proxyGoal(store, 0.8),
      },
      {
        scenario: 'large',
        store,
        metric: METRIC.putMBs,
        label: 'PUT MB/s vs SDK multipart (8 MiB x 4)',
        baseline: METRIC.putMultipartMBs,
        ...proxyGoal(store, 0.8),
      },
      {
        scenario: 'large',
        store,
        metric: METRIC.getMBs,
        label: 'GET MB/s vs streamed GetObject',
        baseline: METRIC.getMBs,
        ...proxyGoal(store, 0.9),
      },
      {
        scenario: 'large',
        store,
        metric: METRIC.peakRss,
        goal: { kind: 'atMost', value: 150 },
      },
    );
  }
  for (const store of ['filesystem', 's3'] as const) {
    rows.push({
      scenario: 'dedup',
      store,
      metric: METRIC.reuploadOps,
      baseline: METRIC.reuploadOps,
    });
    if (store === 's3') {
      rows.push(
        {
          scenario: 'dedup',
          store,
          metric: METRIC.reuploadS3Writes,
          goal: { kind: 'equals', value: 0 },
          worstOfRuns: true,
        },
        { scenario: 'dedup', store, metric: METRIC.reuploadS3Requests, worstOfRuns: true },
        { scenario: 'dedup', store, metric: METRIC.seedS3Writes },
      );
    }
    rows.push({ scenario: 'dedup', store, metric: METRIC.peakRss });
  }
  return rows;
}

export function scenarioLabels(config: BenchConfig): Record<ScenarioId, string> {
  const size = (bytes: number) =>
    bytes >= 1024 ** 3
      ? `${bytes / 1024 ** 3} GiB`
      : bytes >= 1024 ** 2
        ? `${bytes / 1024 ** 2} MiB`
        : `${bytes / 1024} KiB`;
  const { small, medium, large } = config;
  return {
    small: `a. ${size(small.size)} x ${small.count}, c=${small.concurrency}`,
    medium: `b. ${size(medium.size)} x ${medium.count}, c=${medium.concurrency}`,
    large: `c. one ${size(large.mib * 1024 ** 2)} file`,
    dedup: `d. re-PUT of stored ${size(medium.size)} x ${medium.count}, c=${medium.concurrency}`,
  };
}

function digitsOf(metric: string): number {
  if (metric.includes('ms')) return 2;
  if (metric.includes('MB')) return 1;
  return 0;
}

function format(value: number, digits: number): string {
  if (!Number.isFinite(value)) return '-';
  return value.toLocaleString('en-US', {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function goalText(goal: Goal | undefined): string {
  if (!goal) return '-';
  switch (goal.kind) {
    case 'atLeast':
      return `>= ${format(goal.value, 0)}`;
    case 'atMost':
      return `<= ${format(goal.value, 0)}`;
    case 'ratioAtLeast':
      return `>= ${goal.value}x baseline`;
    case 'equals':
      return `= ${goal.value} in every run`;
  }
}

function isMet(goal: Goal, value: number, ratio: number): boolean {
  switch (goal.kind) {
    case 'atLeast':
      return value >= goal.value;
    case 'atMost':
      return value <= goal.value;
    case 'ratioAtLeast':
      return ratio >= goal.value;
    case 'equals':
      return value === goal.value;
  }
}

/** The results table: medians over runs, and ratios as the median of each run's own ratio. */
export function buildRows(samples: Sample[], config: BenchConfig): Row[] {
  const labels = scenarioLabels(config);
  const valuesOf = (scenario: ScenarioId, store: Store, metric: Metric) =>
    new Map(
      samples
        .filter((s) => s.scenario === scenario && s.store === store && s.metric === metric)
        .map((s) => [s.run, s.value]),
    );
  const rows: Row[] = [];
  for (const spec of rowSpecs()) {
    const own = valuesOf(spec.scenario, spec.store, spec.metric);
    if (own.size === 0) continue;
    const values = [...own.values()];
    const value = spec.worstOfRuns ? Math.max(...values) : median(values);
    const digits = digitsOf(spec.metric);
    let baselineText = '-';
    let ratio = Number.NaN;
    if (spec.baseline) {
      const base = valuesOf(spec.scenario, 'baseline', spec.baseline);
      if (base.size > 0) {
        baselineText = format(median([...base.values()]), digits);
        // Each run's ratio against the baseline of the same run: drift between
        // runs (cluster state, page cache) cancels out.
        const ratios = [...own].flatMap(([run, v]) => {
          const b = base.get(run);
          return b === undefined ? [] : [v / b];
        });
        ratio = median(ratios);
      }
    }
    rows.push({
      scenario: labels[spec.scenario],
      store: spec.store === 's3' ? 's3 (radosgw)' : 'filesystem',
      metric: (spec.label ?? spec.metric) + (spec.worstOfRuns ? ' (worst run)' : ''),
      median: format(value, digits),
      range: `${format(Math.min(...values), digits)}-${format(Math.max(...values), digits)}`,
      baseline: baselineText,
      ratio: Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : '-',
      target: goalText(spec.goal),
      met: spec.goal ? (isMet(spec.goal, value, ratio) ? 'met' : 'NOT MET') : '',
    });
  }
  return rows;
}

const PROCESSES = ['client', 'server', 'radosgw', 'osd', 'machine'] as const;

/** Cores each process used per phase (median over runs): what each figure is bound by. */
export function buildCpuRows(cpu: CpuSample[], config: BenchConfig): string[][] {
  const labels = scenarioLabels(config);
  const groups = new Map<string, CpuSample[]>();
  for (const c of cpu) {
    const key = `${c.scenario}\u0000${c.phase}\u0000${c.store}`;
    groups.set(key, [...(groups.get(key) ?? []), c]);
  }
  const rows: string[][] = [];
  for (const list of groups.values()) {
    const first = list[0];
    if (!first) continue;
    const cells = PROCESSES.map((p) => {
      const values = list.map((c) => c.use[p]).filter((v): v is number => v !== undefined);
      return values.length === 0 ? '-' : format(median(values), 2);
    });
    rows.push([
      labels[first.scenario],
      first.phase,
      first.store === 'baseline' ? 'direct S3 (baseline)' : first.store,
      ...cells,
    ]);
  }
  return rows;
}

export const CPU_TITLES = [
  'Scenario',
  'Phase',
  'Store',
  'bench client',
  's3dedup server',
  'radosgw',
  'ceph-osd',
  'whole machine',
];

/** A plain-text table with aligned columns, for the terminal. */
export function textTable(titles: string[], rows: string[][], right: boolean[] = []): string {
  const widths = titles.map((t, i) => Math.max(t.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(titles), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

export function markdownTable(titles: string[], rows: string[][], right: boolean[] = []): string {
  const esc = (c: string) => c.replace(/\|/g, '\\|');
  return [
    `| ${titles.map(esc).join(' | ')} |`,
    `| ${titles.map((_, i) => (right[i] ? '---:' : '---')).join(' | ')} |`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function resultTables(rows: Row[]): {
  titles: string[];
  cells: string[][];
  right: boolean[];
} {
  return {
    titles: COLUMNS.map((c) => c.title),
    cells: rows.map((r) => COLUMNS.map((c) => r[c.key])),
    right: COLUMNS.map((c) => c.right === true),
  };
}

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
  const { config } = r;
  const table = resultTables(r.rows);
  const unmet = r.rows.filter((row) => row.met === 'NOT MET');
  return `# Benchmarks

Measured by \`npm run bench\` (\`bench/\`) on ${r.startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC,
${config.runs} runs, ${Math.round(r.durationS)} s in all. SPEC §9 targets:
${unmet.length === 0 ? 'all met.' : `${unmet.length} not met (see the notes below the tables).`}

## How measured

- **Everything on one machine.** The benchmark starts a throw-away Ceph
  cluster (one monitor, one memstore OSD, one radosgw: \`test/services/ceph-cluster.sh\`)
  and, per scenario and store, a fresh s3dedup server process
  (\`dist/cli/main.js server\`, SQLite metadata, default settings, cleaner
  off), all on the same cores as the benchmark client. Every figure includes
  that CPU contention: the client, the server, radosgw and the OSD share
  ${r.machine.cores} cores (see the CPU table).
- **Stores.** \`filesystem\`: blobs in a folder on the local disk.
  \`s3 (radosgw)\`: blobs in a bucket of the Ceph radosgw. **Baseline**: the
  same payloads PUT and GET directly to the same radosgw with the AWS SDK
  (\`@aws-sdk/client-s3\`), measured in the same run. Each run goes through the
  scenarios in order and, within a scenario, through the three targets in an
  order that rotates from run to run.
- **Requests** are shaped like the Python Filetracker client's: gzip (level 9)
  body, \`SHA256-Checksum\`, \`Logical-Size\`, \`last_modified\` as a
  urlencoded RFC 2822 date, python-requests' headers, keep-alive connections.
  GETs take the stored gzip bytes. The client hashes every body it receives and
  checks it (length and SHA-256), on both the s3dedup and the baseline side.
  Each target gets a warm-up of ${config.small.warmup} small PUT+GETs before measuring.
- **Scenarios.** (a) ${config.small.count} distinct 1 KiB text files at
  concurrency ${config.small.concurrency}: PUT all, then GET all; ops/s and
  per-request latency. (b) ${config.medium.count} files of 1 MiB random
  (incompressible, distinct) content at concurrency ${config.medium.concurrency};
  MB/s of gzip body bytes (10^6 bytes/s). (c) one ${config.large.mib} MiB file,
  a multi-member gzip of incompressible 1 MiB blocks generated while it is sent;
  the baseline uploads it both as one streamed PutObject with its length and as
  an SDK multipart upload (8 MiB parts, 4 in flight); GET is a streamed
  GetObject. (d) the 1 MiB set uploaded once, then again to new paths
  (timed); the S3 store's server reaches radosgw through a counting HTTP proxy
  that tallies every request S3 receives by method. The baseline here is a
  plain upload of the same files (S3 does not deduplicate).
- **Memory**: peak RSS (VmHWM from \`/proc/PID/status\`) of the server process,
  restarted for every scenario so each peak is that scenario's own (warm-up included).
- **Statistics**: the median of the ${config.runs} runs; the ratio is the median
  of each run's value divided by the baseline of the same run (for latencies,
  lower is better). Counts that must hold always are shown for the worst run.
- After each scenario its bucket is emptied and deleted and radosgw's garbage
  collector is run, so the in-memory cluster never holds more than one scenario's data.

## Machine

${machineLines(r.machine)
  .map((l) => `- ${l}`)
  .join('\n')}

## Results

${markdownTable(table.titles, table.cells, table.right)}

## CPU use per phase

Cores kept busy during each timed phase (1.00 = one core all the time),
median over runs. "bench client" is the benchmark process (and the counting
proxy in scenario d); "whole machine" is all processes together, out of
${r.machine.cores}.

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
  // The project's formatter owns Markdown too (`biome check .` covers docs/):
  // let it lay the tables out, so a fresh report passes the lint as written.
  try {
    execFileSync(join(input.root, 'node_modules', '.bin', 'biome'), ['format', '--write', path], {
      cwd: input.root,
      stdio: 'ignore',
    });
  } catch {
    process.stderr.write(`note: could not format ${path} with biome\n`);
  }
}
