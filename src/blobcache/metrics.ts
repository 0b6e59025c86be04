import { Counter, Gauge, type Registry } from 'prom-client';

/** s3dedup_cache_* (/metrics): what the blob cache in CACHE_DIR does for this instance. */
export interface CacheMetrics {
  /** GETs answered from the cache. */
  hits: Counter;
  /** GETs of cacheable blobs that went to the object store. */
  misses: Counter;
  /** Stored bytes sent from cache entries. */
  hitBytes: Counter;
  /** Fills that became entries. */
  fills: Counter;
  /** Fills begun, by how the object store's bytes were held (label `read`: whole, streamed). */
  fillReads: Counter<'read'>;
  /** Bytes of reused buffers that fills held whole hold now. */
  fillMemory: Gauge;
  /** Fills given up (label `reason`: cut_off, invalid, disk, dropped). */
  fillsAbandoned: Counter<'reason'>;
  /** Entries removed to stay under CACHE_MAX_BYTES. */
  evictions: Counter;
  /** Entries found damaged or gone on a hit, and dropped. */
  damaged: Counter;
  bytes: Gauge;
  entries: Gauge;
}

export function cacheMetrics(registry: Registry): CacheMetrics {
  const registers = [registry];
  return {
    hits: new Counter({
      name: 's3dedup_cache_hits_total',
      help: 'GETs answered from the local blob cache',
      registers,
    }),
    misses: new Counter({
      name: 's3dedup_cache_misses_total',
      help: 'GETs of blobs not in the local cache, read from the object store',
      registers,
    }),
    hitBytes: new Counter({
      name: 's3dedup_cache_hit_bytes_total',
      help: 'Stored (gzip) bytes sent from the local blob cache',
      registers,
    }),
    fills: new Counter({
      name: 's3dedup_cache_fills_total',
      help: 'Blobs read from the object store, verified and kept in the cache',
      registers,
    }),
    fillReads: new Counter({
      name: 's3dedup_cache_fill_reads_total',
      help: 'Cache fills begun: whole (held in memory, checked at once) or streamed (written and checked as they pass)',
      labelNames: ['read'],
      registers,
    }),
    fillMemory: new Gauge({
      name: 's3dedup_cache_fill_memory_bytes',
      help: 'Bytes of the reused buffers held by cache fills of objects read whole',
      registers,
    }),
    fillsAbandoned: new Counter({
      name: 's3dedup_cache_fills_abandoned_total',
      help: 'Cache fills given up: cut_off (client or object store gone), invalid (bytes did not hash to the key, or not as many as announced), disk (cache folder failed), dropped (object deleted or replaced while filling)',
      labelNames: ['reason'],
      registers,
    }),
    evictions: new Counter({
      name: 's3dedup_cache_evictions_total',
      help: 'Cache entries removed to stay under CACHE_MAX_BYTES',
      registers,
    }),
    damaged: new Counter({
      name: 's3dedup_cache_damaged_total',
      help: 'Cache entries found gone or damaged (content hash or size) on a hit, dropped and read from the object store instead',
      registers,
    }),
    bytes: new Gauge({
      name: 's3dedup_cache_bytes',
      help: 'Bytes held by the local blob cache',
      registers,
    }),
    entries: new Gauge({
      name: 's3dedup_cache_entries',
      help: 'Blobs held by the local blob cache',
      registers,
    }),
  };
}
