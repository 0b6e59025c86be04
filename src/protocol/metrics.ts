import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

/** GET /metrics (and /ft/metrics): Prometheus text exposition of the process's registry. */
export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  for (const path of ['/metrics', '/ft/metrics']) {
    app.get(path, async (_request, reply) =>
      reply.header('content-type', registry.contentType).send(await registry.metrics()),
    );
  }
}
