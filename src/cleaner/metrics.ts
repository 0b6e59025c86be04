import { Counter, Gauge, type Registry } from 'prom-client';

/** s3dedup_cleaner_* (SPEC §8), per instance. */
export interface CleanerMetrics {
  runs: Counter<'outcome'>;
  deletedBlobs: Counter;
  deletedOrphans: Counter;
  freedBytes: Counter;
  errors: Counter;
  lastRun: Gauge;
}

export function cleanerMetrics(registry: Registry): CleanerMetrics {
  const registers = [registry];
  return {
    runs: new Counter({
      name: 's3dedup_cleaner_runs_total',
      help: 'Cleaner runs, by outcome (completed, skipped while another instance cleaned, failed)',
      labelNames: ['outcome'],
      registers,
    }),
    deletedBlobs: new Counter({
      name: 's3dedup_cleaner_deleted_blobs_total',
      help: 'Unreferenced blobs the cleaner deleted (row and object)',
      registers,
    }),
    deletedOrphans: new Counter({
      name: 's3dedup_cleaner_deleted_orphans_total',
      help: 'Objects without metadata (left by crashed uploads) the cleaner deleted',
      registers,
    }),
    freedBytes: new Counter({
      name: 's3dedup_cleaner_freed_bytes_total',
      help: 'Bytes of objects the cleaner deleted',
      registers,
    }),
    errors: new Counter({
      name: 's3dedup_cleaner_errors_total',
      help: 'Cleaner runs ended by an error (nothing more is deleted in such a run)',
      registers,
    }),
    lastRun: new Gauge({
      name: 's3dedup_cleaner_last_run_timestamp_seconds',
      help: 'When the last cleaner run ended (or found another instance cleaning)',
      registers,
    }),
  };
}
