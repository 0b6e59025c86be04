import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';

/**
 * GET /metrics (Prometheus text) and /metrics/json (the same samples as
 * prom-client's JSON), at the root and under /ft.
 */
export function registerMetricsRoute(app: FastifyInstance, registry: Registry): void {
  for (const base of ['', '/ft']) {
    app.get(`${base}/metrics`, async (_request, reply) =>
      reply.header('content-type', registry.contentType).send(await registry.metrics()),
    );
    app.get(`${base}/metrics/json`, async (_request, reply) =>
      reply.send(await registry.getMetricsAsJSON()),
    );
  }
}
