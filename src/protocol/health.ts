import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { httpErrorOf } from './errors.js';

/** A cheap probe of one dependency: resolves when it works, throws why it does not. */
export type Probe = () => Promise<void>;

/**
 * GET /health (SPEC §8): each dependency probed cheaply (SELECT 1, a folder
 * access or a bucket HEAD; no table scans), 200 when all work, 503 otherwise.
 */
export function registerHealthRoute(
  app: FastifyInstance,
  probes: { database: Probe; storage: Probe },
): void {
  const started = Date.now();
  // Also under /ft, like every other route, so the status page at /ft/ui/ finds it.
  const health = async (_request: FastifyRequest, reply: FastifyReply) => {
    const run = async (probe: Probe) => {
      try {
        await probe();
        return 'ok';
      } catch (err) {
        return httpErrorOf(err).message;
      }
    };
    const [database, storage] = await Promise.all([run(probes.database), run(probes.storage)]);
    const failing = [database, storage].filter((s) => s !== 'ok').length;
    const status = failing === 0 ? 'ok' : failing === 2 ? 'error' : 'degraded';
    return reply.code(failing === 0 ? 200 : 503).send({
      status,
      uptime_seconds: Math.floor((Date.now() - started) / 1000),
      checks: { database, storage },
    });
  };
  app.get('/health', health);
  app.get('/ft/health', health);
}
