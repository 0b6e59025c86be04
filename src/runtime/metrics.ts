import { Counter, type Registry } from 'prom-client';
import type { GcPacer } from './gc-pacer.js';

/** s3dedup_gc_pacer_collections_total: the minor collections the pacer ran (src/runtime/gc-pacer.ts). */
export function registerGcPacerMetrics(registry: Registry, pacer: GcPacer): void {
  new Counter({
    name: 's3dedup_gc_pacer_collections_total',
    help: 'Minor garbage collections run by the pacer while requests move bodies (docs/memory.md)',
    registers: [registry],
    // The pacer counts on its own; a scrape copies its count.
    collect() {
      this.reset();
      this.inc(pacer.collections);
    },
  });
}
