import type { MetaStore, StoreTotals } from '../metastore/port.js';

export interface StoreStats extends StoreTotals {
  /** Files' bytes per distinct content's bytes (1 = nothing deduplicated). */
  dedupRatio: number;
  /** Share of the files' bytes not stored thanks to dedup and compression. */
  savings: number;
  /** Bytes the files would take without dedup and compression, beyond what is stored. */
  bytesSaved: number;
}

/** What `s3dedup stats` prints: totals from one aggregate query, whatever the size of the store. */
export async function storeStats(meta: MetaStore): Promise<StoreStats> {
  return withRatios(await meta.totals());
}

/** The ratios `stats` and /metrics derive from the totals. */
export function withRatios(t: StoreTotals): StoreStats {
  return {
    ...t,
    dedupRatio: t.uniqueLogicalBytes > 0 ? t.logicalBytes / t.uniqueLogicalBytes : 1,
    savings: t.logicalBytes > 0 ? 1 - t.storedBytes / t.logicalBytes : 0,
    bytesSaved: Math.max(0, t.logicalBytes - t.storedBytes),
  };
}
