import { Counter, type Registry } from 'prom-client';

/** s3dedup_migration_* and s3dedup_filetracker_fallbacks_total (SPEC §8). */
export interface MigrationMetrics {
  files: Counter<'outcome'>;
  bytes: Counter;
  fallbacks: Counter<'outcome'>;
}

export function migrationMetrics(registry: Registry): MigrationMetrics {
  const registers = [registry];
  return {
    files: new Counter({
      name: 's3dedup_migration_files_total',
      help: 'Files the migration handled, by outcome (copied, skipped: already here, failed)',
      labelNames: ['outcome'],
      registers,
    }),
    bytes: new Counter({
      name: 's3dedup_migration_bytes_total',
      help: 'Bytes (uncompressed) of the files the migration copied',
      registers,
    }),
    fallbacks: new Counter({
      name: 's3dedup_filetracker_fallbacks_total',
      help: 'Reads of files not here yet, answered from the old Filetracker, by outcome (found, absent, failed)',
      labelNames: ['outcome'],
      registers,
    }),
  };
}
