import { Counter, type Registry } from 'prom-client';
import type { GcPacer } from './gc-pacer.js';

/** s3dedup_gc_pacer_collections_total and _full_collections_total: what the pacer ran (src/runtime/gc-pacer.ts). */
export function registerGcPacerMetrics(registry: Registry, pacer: GcPacer): void {
  new Counter({
    name: 's3dedup_gc_pacer_collections_total',
    help: 'Garbage collections run by the pacer while requests move bodies: minor ones, and full ones when promoted buffers pile up (docs/memory.md)',
    registers: [registry],
    // The pacer counts on its own; a scrape copies its count.
    collect() {
      this.reset();
      this.inc(pacer.collections);
    },
  });
  new Counter({
    name: 's3dedup_gc_pacer_full_collections_total',
    help: 'Of those, full collections: promoted buffers had piled up (docs/memory.md)',
    registers: [registry],
    collect() {
      this.reset();
      this.inc(pacer.majorCollections);
    },
  });
}
