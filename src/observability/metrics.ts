import { hostname } from 'node:os';
import { Gauge, type Histogram, Registry } from 'prom-client';
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

  constructor() {
    // Which process answered a scrape: behind a load balancer the status
    // page must not take two processes' counters for one's.
    new Gauge({
      name: 's3dedup_instance_info',
      help: 'Always 1; the labels name this process (host:pid) and when it started (unix seconds)',
      labelNames: ['instance', 'started'],
      registers: [this.registry],
    }).set(
      { instance: `${hostname()}:${process.pid}`, started: String(Math.floor(Date.now() / 1000)) },
      1,
    );
  }
}
