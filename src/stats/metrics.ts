import { Gauge, type Registry } from 'prom-client';
import type { MetaStore } from '../metastore/port.js';
import { type StoreStats, withRatios } from './stats.js';

/** How long one reading of the kept totals serves the scrapes that ask for it. */
const FRESH_MS = 1000;

/**
 * The store's totals at /metrics (SPEC §8, the upstream's names), from the
 * totals the database keeps (MetaStore.keptTotals): a few rows per scrape,
 * never the blobs table, and the same figures from every instance on one
 * database. A scrape while the database is down keeps the last figures (the
 * failure shows in /health and in s3dedup_backend_errors_total).
 */
export function registerStoreMetrics(registry: Registry, meta: MetaStore): void {
  let last: { at: number; stats: Promise<StoreStats | null> } | null = null;
  let known: StoreStats | null = null;
  const read = (): Promise<StoreStats | null> => {
    if (last && Date.now() - last.at < FRESH_MS) return last.stats;
    const stats = meta.keptTotals().then(
      (t) => {
        known = withRatios(t);
        return known;
      },
      () => known,
    );
    last = { at: Date.now(), stats };
    return stats;
  };
  const gauge = (name: string, help: string, pick: (s: StoreStats) => number) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      async collect() {
        const s = await read();
        if (s) this.set(pick(s));
      },
    });
  gauge('s3dedup_total_files', 'Files (paths) stored', (s) => s.files);
  gauge('s3dedup_total_blobs', 'Distinct contents stored', (s) => s.blobs);
  gauge(
    's3dedup_total_logical_size_bytes',
    'Uncompressed bytes of all files, each path counted',
    (s) => s.logicalBytes,
  );
  gauge(
    's3dedup_total_storage_bytes',
    'Bytes in the blob store (compressed)',
    (s) => s.storedBytes,
  );
  gauge(
    's3dedup_deduplication_ratio',
    "Files' bytes per distinct content's bytes (1 = nothing deduplicated)",
    (s) => s.dedupRatio,
  );
  gauge(
    's3dedup_deduplicated_bytes_saved',
    'Bytes the files would take without dedup and compression, beyond what is stored',
    (s) => s.bytesSaved,
  );
  gauge(
    's3dedup_storage_savings_ratio',
    "Share of the files' bytes not stored thanks to dedup and compression",
    (s) => s.savings,
  );
}
