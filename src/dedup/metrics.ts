import { Counter, Gauge, type Registry } from 'prom-client';

/** s3dedup_dedup_hits_total / _misses_total (SPEC §8), per instance. */
export interface DedupMetrics {
  /** A PUT whose content was stored already: nothing new stored. */
  hits: Counter;
  /** A PUT that stored a new content. */
  misses: Counter;
  /** Upload bodies by how they were read: `whole` (one buffer) or `streamed`. */
  bodies: Counter<'read'>;
  /** Bytes of upload bodies held in memory now (see BufferBudget). */
  bodyMemory: Gauge;
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
    bodies: new Counter({
      name: 's3dedup_upload_bodies_total',
      help: 'Upload bodies by how they were read: whole (one buffer, one check) or streamed (larger, of unknown length, or no memory left for them)',
      labelNames: ['read'],
      registers,
    }),
    bodyMemory: new Gauge({
      name: 's3dedup_upload_body_memory_bytes',
      help: 'Bytes reserved for upload bodies held in memory (read whole, or until their hash is known)',
      registers,
    }),
  };
}
