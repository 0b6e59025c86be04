/**
 * What the benchmark runs, from environment variables. The defaults are the
 * workloads SPEC §9 names; the variables exist to make a quick check cheap
 * (e.g. BENCH_RUNS=1 BENCH_LARGE_MIB=64), never to change what the recorded
 * results in docs/benchmarks.md mean.
 */

export const SCENARIOS = ['small', 'medium', 'large', 'dedup', 'postgres', 'hot'] as const;
export type ScenarioId = (typeof SCENARIOS)[number];

export interface BenchConfig {
  /** Repetitions of every scenario; the report shows medians. */
  runs: number;
  scenarios: ScenarioId[];
  /** `warmup`: distinct small files PUT and GET before any target is measured. */
  small: { count: number; size: number; concurrency: number; warmup: number };
  medium: { count: number; size: number; concurrency: number };
  /** Reads of the hot set: the medium set this many times, the small set `smallPasses` times. */
  hot: { mediumPasses: number; smallPasses: number };
  /** One file of `mib` incompressible 1 MiB blocks. */
  large: { mib: number; partSize: number; partsInFlight: number };
  /** Where the Markdown report goes; empty = do not write it. */
  docsPath: string;
  /** When set, every server process writes a V8 CPU profile (--cpu-prof) under this folder. */
  cpuProfileDir: string | undefined;
}

const KiB = 1024;
const MiB = 1024 * KiB;

function int(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Error(`${name} must be a whole number from ${min} to ${max}, not "${raw}"`);
  }
  return value;
}

function scenarios(): ScenarioId[] {
  const raw = process.env.BENCH_SCENARIOS;
  if (raw === undefined || raw.trim() === '') return [...SCENARIOS];
  const picked = raw.split(',').map((s) => s.trim());
  for (const s of picked) {
    if (!(SCENARIOS as readonly string[]).includes(s)) {
      throw new Error(`BENCH_SCENARIOS: unknown scenario "${s}" (known: ${SCENARIOS.join(', ')})`);
    }
  }
  return SCENARIOS.filter((s) => picked.includes(s));
}

export function loadBenchConfig(defaultDocsPath: string): BenchConfig {
  const config: BenchConfig = {
    runs: int('BENCH_RUNS', 3, 1, 100),
    scenarios: scenarios(),
    small: {
      count: int('BENCH_SMALL_COUNT', 2000, 1, 1_000_000),
      size: int('BENCH_SMALL_SIZE', KiB, 16, MiB),
      concurrency: int('BENCH_SMALL_CONCURRENCY', 8, 1, 256),
      warmup: 200,
    },
    medium: {
      count: int('BENCH_MEDIUM_COUNT', 200, 1, 2000),
      size: int('BENCH_MEDIUM_SIZE', MiB, KiB, 16 * MiB),
      concurrency: int('BENCH_MEDIUM_CONCURRENCY', 4, 1, 64),
    },
    hot: { mediumPasses: 5, smallPasses: 3 },
    // The Ceph test cluster keeps objects in RAM at 2-3x their size: 1 GiB
    // is the most this machine can afford to have stored at one time.
    large: {
      mib: int('BENCH_LARGE_MIB', 1024, 8, 1024),
      partSize: 8 * MiB,
      partsInFlight: 4,
    },
    docsPath: process.env.BENCH_DOCS ?? defaultDocsPath,
    cpuProfileDir: process.env.BENCH_CPU_PROF || undefined,
  };
  // The medium set sits in the cluster whole (the dedup scenario keeps it to re-upload).
  if (config.medium.count * config.medium.size > 1024 * MiB) {
    throw new Error('BENCH_MEDIUM_COUNT x BENCH_MEDIUM_SIZE must not exceed 1 GiB');
  }
  return config;
}
