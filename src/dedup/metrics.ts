import { Counter, type Registry } from 'prom-client';

/** s3dedup_dedup_hits_total / _misses_total (SPEC §8), per instance. */
export interface DedupMetrics {
  /** A PUT whose content was stored already: nothing new stored. */
  hits: Counter;
  /** A PUT that stored a new content. */
  misses: Counter;
}

export function dedupMetrics(registry: Registry): DedupMetrics {
  const registers = [registry];
  return {
    hits: new Counter({
      name: 's3dedup_dedup_hits_total',
      help: 'Uploads whose content was stored already (verified, then referenced: nothing new stored)',
      registers,
    }),
    misses: new Counter({
      name: 's3dedup_dedup_misses_total',
      help: 'Uploads that stored a new content',
      registers,
    }),
  };
}
