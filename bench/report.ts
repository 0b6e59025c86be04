import type { BenchConfig, ScenarioId } from './config.js';
import { type CpuSample, METRIC, type Metric, type Sample } from './scenarios.js';
import { median } from './stats.js';
import { STORE_LABELS, type Store } from './subjects.js';

type Goal =
  | { kind: 'atLeast'; value: number }
  | { kind: 'atMost'; value: number }
  | { kind: 'ratioAtLeast'; value: number }
  | { kind: 'ratioAtMost'; value: number }
  | { kind: 'equals'; value: number };

interface RowSpec {
  scenario: ScenarioId;
  store: Exclude<Store, 'baseline'>;
  metric: Metric;
  /** What the ratio is taken against: S3 used directly, unless another store is named. */
  against?: Store;
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
  // The filesystem store against nginx on the same disk (issue #14): what
  // s3dedup's checks, durability and bookkeeping cost beside a server that
  // only moves bytes. No target: the figures say where the time goes.
  const vsNginx = (scenario: ScenarioId, metric: Metric, label: string): RowSpec => ({
    scenario,
    store: 'filesystem',
    metric,
    label,
    baseline: metric,
    against: 'nginx',
  });
  rows.push(
    vsNginx('small', METRIC.putOps, 'PUT ops/s vs nginx'),
    vsNginx('small', METRIC.getOps, 'GET ops/s vs nginx'),
    vsNginx('small', METRIC.putP50, 'PUT p50 ms vs nginx'),
    vsNginx('small', METRIC.getP50, 'GET p50 ms vs nginx'),
    vsNginx('medium', METRIC.putMBs, 'PUT MB/s vs nginx'),
    vsNginx('medium', METRIC.getMBs, 'GET MB/s vs nginx'),
    vsNginx('large', METRIC.putMBs, 'PUT MB/s vs nginx'),
    vsNginx('large', METRIC.getMBs, 'GET MB/s vs nginx'),
  );
  // The blob cache (issue #15): hot reads through S3 against the filesystem
  // store's reads of the same files, first reads against S3 without a cache.
  const hot = (
    store: 's3' | 's3-cache' | 'filesystem',
    metric: Metric,
    against?: Store,
    label?: string,
    goal?: Goal,
  ): RowSpec => ({
    scenario: 'hot',
    store,
    metric,
    ...(against && { baseline: metric, against }),
    ...(label && { label }),
    ...(goal && { goal }),
  });
  const sets = [
    [METRIC.hotFirstMBs, METRIC.hotMBs],
    [METRIC.hotSmallFirstOps, METRIC.hotSmallOps],
  ] as const;
  for (const [first, again] of sets) {
    rows.push(
      hot('filesystem', first),
      hot('filesystem', again),
      hot('s3', again, 'filesystem', `${again} vs filesystem`),
      hot('s3-cache', again, 'filesystem', `${again} vs filesystem`, {
        kind: 'ratioAtLeast',
        value: 0.9,
      }),
      hot('s3-cache', first, 's3', `${first} vs s3 without cache`, {
        kind: 'ratioAtLeast',
        value: 1,
      }),
    );
  }
  rows.push(hot('s3-cache', METRIC.peakRss));
  // CPU per byte through S3 (issue #15): s3dedup against the bare relay to the
  // same radosgw; the filesystem store and nginx for scale.
  for (const metric of [METRIC.putCpuPerGB, METRIC.getCpuPerGB]) {
    rows.push(
      { scenario: 'medium', store: 'relay', metric },
      { scenario: 'medium', store: 'nginx', metric },
      { scenario: 'medium', store: 'filesystem', metric },
      {
        scenario: 'medium',
        store: 's3',
        metric,
        label: `${metric} vs bare relay`,
        baseline: metric,
        against: 'relay',
        goal: { kind: 'ratioAtMost', value: 1.3 },
      },
    );
  }
  // SPEC §9 sets no target here; the figures show what shared metadata and
  // locks cost, and what a second and third instance bring, on this machine.
  for (const store of ['pg1-fs', 'pg3-fs', 'pg1', 'pg3'] as const) {
    for (const metric of [
      METRIC.putOps,
      METRIC.putP50,
      METRIC.putP99,
      METRIC.getOps,
      METRIC.getP50,
      METRIC.getP99,
      METRIC.peakRss,
    ]) {
      rows.push({ scenario: 'postgres', store, metric });
    }
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
    postgres: `e. ${size(small.size)} x ${small.count}, c=${small.concurrency}, PostgreSQL`,
    hot: `f. hot set: ${size(medium.size)} x ${medium.count} read ${config.hot.mediumPasses}x at c=${medium.concurrency}, ${size(small.size)} x ${small.count} read ${config.hot.smallPasses}x at c=${small.concurrency}`,
  };
}

function digitsOf(metric: string): number {
  if (metric.includes('ms') || metric.includes('s/GB')) return 2;
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
      return `>= ${goal.value}x`;
    case 'ratioAtMost':
      return `<= ${goal.value}x`;
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
    case 'ratioAtMost':
      return ratio <= goal.value;
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
      const base = valuesOf(spec.scenario, spec.against ?? 'baseline', spec.baseline);
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
      store: STORE_LABELS[spec.store],
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
    rows.push([labels[first.scenario], first.phase, STORE_LABELS[first.store], ...cells]);
  }
  return rows;
}

export const CPU_TITLES = [
  'Scenario',
  'Phase',
  'Store',
  'bench client',
  'server (s3dedup or nginx)',
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
