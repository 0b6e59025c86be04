/**
 * `npm run bench`: SPEC §9 measured on this machine. Starts its own services
 * (a throw-away Ceph radosgw and s3dedup server processes), runs every
 * scenario against the filesystem store, the S3 store and S3 used directly,
 * several times, prints medians and ratios, and writes docs/benchmarks.md.
 *
 * Environment (bench/config.ts): BENCH_RUNS (3), BENCH_SCENARIOS
 * (small,medium,large,dedup,postgres,hot), BENCH_SMALL_COUNT / _SIZE / _CONCURRENCY
 * (2000, 1024, 8), BENCH_MEDIUM_COUNT / _SIZE / _CONCURRENCY (200, 1 MiB, 4),
 * BENCH_LARGE_MIB (1024), BENCH_DOCS (report path; empty = none),
 * BENCH_CPU_PROF=DIR (V8 CPU profile of every server process; slows it down)
 * and BENCH_S3_PAYLOAD_SIGNING (the S3 store's S3_PAYLOAD_SIGNING; its own
 * default, `auto`, signs over radosgw's plain HTTP).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadBenchConfig, type ScenarioId } from './config.js';
import { writeReport } from './docs.js';
import { describeMachine, machineLines } from './machine.js';
import { largePayload, randomPayloads, smallPayloads } from './payloads.js';
import {
  buildCpuRows,
  buildRows,
  CPU_TITLES,
  resultTables,
  scenarioLabels,
  textTable,
} from './report.js';
import { createBucket, dropBucket, s3Client, uniqueBucket } from './s3.js';
import { type BenchData, type CpuSample, runScenario, type Sample } from './scenarios.js';
import { ROOT, runBench, startCephCluster, startPostgresServer } from './services.js';
import type { Store } from './subjects.js';
import { DirectS3Target } from './targets.js';

function log(line: string): void {
  process.stdout.write(`${line}\n`);
}

/**
 * The stores a scenario runs against, in an order that rotates per run, so
 * none is always first or last. The PostgreSQL scenario compares one and
 * three instances; the others compare both stores with S3 used directly,
 * and the filesystem store with nginx serving the same disk (not the
 * re-upload scenario: nginx does not deduplicate).
 */
function targetOrder(scenario: ScenarioId, run: number): Store[] {
  const order: Store[] =
    scenario === 'postgres'
      ? ['pg1', 'pg3', 'pg1-fs', 'pg3-fs']
      : scenario === 'dedup'
        ? ['baseline', 'filesystem', 's3']
        : scenario === 'hot'
          ? ['filesystem', 's3', 's3-cache']
          : scenario === 'medium'
            ? ['baseline', 'nginx', 'filesystem', 's3', 'relay']
            : ['baseline', 'nginx', 'filesystem', 's3'];
  return order.map((_, i) => order[(i + run) % order.length] as Store);
}

async function buildData(config: ReturnType<typeof loadBenchConfig>): Promise<BenchData> {
  const [warmup, small, medium] = await Promise.all([
    smallPayloads(config.small.warmup, config.small.size, 'warm-up'),
    smallPayloads(config.small.count, config.small.size, 'small'),
    randomPayloads(config.medium.count, config.medium.size),
  ]);
  return { warmup, small, medium, large: largePayload(config.large.mib) };
}

async function main(): Promise<void> {
  const startedAt = new Date();
  const config = loadBenchConfig(join(ROOT, 'docs', 'benchmarks.md'));
  if (!existsSync(join(ROOT, 'dist', 'cli', 'main.js'))) {
    throw new Error('dist/cli/main.js is missing: run `npm run build` first');
  }
  const machine = describeMachine();
  log('s3dedup benchmark (SPEC §9)');
  for (const line of machineLines(machine)) log(`  ${line}`);
  const labels = scenarioLabels(config);
  log(`  ${config.runs} runs of: ${config.scenarios.map((s) => labels[s]).join('; ')}`);
  log('');

  log('starting Ceph (mon + memstore OSD + radosgw) and building the payloads...');
  // Both at once: the cluster mostly waits on its daemons, gzip runs on the thread pool.
  const [ceph, data] = await Promise.all([startCephCluster(), buildData(config)]);
  log(`radosgw at ${ceph.endpoint}`);
  const postgres = config.scenarios.includes('postgres') ? await startPostgresServer() : undefined;
  if (postgres) log('PostgreSQL started');
  const s3 = s3Client(ceph);

  // radosgw creates its pools on the first bucket (seconds); do that, and warm
  // the cluster and the SDK up, before anything is measured.
  const warmBucket = uniqueBucket('warmup');
  await createBucket(s3, warmBucket);
  const warm = new DirectS3Target(s3, warmBucket, { partSize: 0, inFlight: 1 });
  for (const [i, p] of data.warmup.entries()) {
    await warm.put(`w/${i}`, p);
    await warm.get(`w/${i}`, p);
  }
  await dropBucket(s3, warmBucket);
  await ceph.collectGarbage();

  const samples: Sample[] = [];
  const cpu: CpuSample[] = [];
  const version = Math.floor(Date.now() / 1000);
  for (let run = 0; run < config.runs; run++) {
    const ctx = {
      config,
      ceph,
      s3,
      postgres,
      version,
      run,
      data,
      samples,
      cpu,
      log: (line: string) => log(`[run ${run + 1}/${config.runs}] ${line}`),
    };
    for (const scenario of config.scenarios) {
      for (const store of targetOrder(scenario, run)) await runScenario(ctx, scenario, store);
    }
  }
  s3.destroy();

  const rows = buildRows(samples, config);
  const cpuRows = buildCpuRows(cpu, config);
  const table = resultTables(rows);
  log('');
  log(`Results: medians of ${config.runs} runs; baseline = the same radosgw used directly`);
  log(textTable(table.titles, table.cells, table.right));
  log('');
  log('CPU use per timed phase (cores; median of runs):');
  log(
    textTable(
      CPU_TITLES,
      cpuRows,
      CPU_TITLES.map((_, i) => i >= 3),
    ),
  );
  log('');
  const unmet = rows.filter((r) => r.met === 'NOT MET');
  const met = rows.filter((r) => r.met === 'met');
  log(`Targets: ${met.length} met, ${unmet.length} not met`);
  for (const r of unmet) log(`  NOT MET: ${r.scenario} / ${r.store} / ${r.metric}: ${r.median}`);
  const durationS = (Date.now() - startedAt.getTime()) / 1000;
  if (config.docsPath !== '') {
    writeReport(config.docsPath, {
      root: ROOT,
      config,
      machine,
      rows,
      cpuRows,
      startedAt,
      durationS,
    });
    log(`written to ${config.docsPath}`);
  }
  log(`done in ${Math.round(durationS)} s`);
}

runBench('benchmark', main);
