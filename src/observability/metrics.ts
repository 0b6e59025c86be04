import { type Histogram, Registry } from 'prom-client';
import { type CleanerMetrics, cleanerMetrics } from '../cleaner/metrics.js';
import { type DedupMetrics, dedupMetrics } from '../dedup/metrics.js';
import { lockWaitHistogram } from '../locks/metrics.js';
import { type MigrationMetrics, migrationMetrics } from '../migration/metrics.js';
import { type HttpMetrics, httpMetrics } from '../protocol/http-metrics.js';

/**
 * The metrics of one process, in one registry (GET /metrics). Each part
 * defines its own set beside its code; this only gathers them.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly cleaner: CleanerMetrics = cleanerMetrics(this.registry);
  readonly migration: MigrationMetrics = migrationMetrics(this.registry);
  readonly http: HttpMetrics = httpMetrics(this.registry);
  readonly dedup: DedupMetrics = dedupMetrics(this.registry);
  readonly lockWait: Histogram<'kind'> = lockWaitHistogram(this.registry);
}
