import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import type { BlobStore } from './blobstore/port.js';
import type { Files } from './dedup/service.js';
import { invalidPath, shuttingDown } from './errors.js';
import type { MetaStore } from './metastore/port.js';
import type { Logger } from './observability/logger.js';
import type { Metrics } from './observability/metrics.js';
import { type CredentialCheck, registerAccessControl } from './protocol/access-control.js';
import { registerAccessLog } from './protocol/access-log.js';
import { settleUnreadBodies } from './protocol/body.js';
import { sendError } from './protocol/errors.js';
import { registerHealthRoute } from './protocol/health.js';
import { registerHttpMetrics } from './protocol/http-metrics.js';
import { keepConnectionsWaitingOnUs } from './protocol/idle.js';
import { registerMetricsRoute } from './protocol/metrics.js';
import { notFoundHandler, registerFiletrackerRoutes } from './protocol/routes.js';
import { registerStatusPage } from './protocol/ui.js';
import type { GcPacer } from './runtime/gc-pacer.js';

export interface AppDeps {
  service: Files;
  meta: MetaStore;
  blobs: BlobStore;
  logger: Logger;
  /** Seconds a connection may stay silent mid-request. */
  clientIdleTimeoutSeconds: number;
  /** Paces garbage collection while requests are in flight (src/runtime/gc-pacer.ts). */
  gcPacer?: GcPacer;
  /** Served at /metrics. */
  metrics?: Metrics;
  /** One log line per request (src/protocol/access-log.ts). */
  accessLog?: boolean;
  /** Proxies whose X-Forwarded-For names the client (Fastify's trustProxy). */
  trustedProxies?: string[];
  /** AUTH_USERS_FILE: the credentials every route but /version and /health needs. */
  access?: CredentialCheck;
  /**
   * /metrics, /metrics/json and /ui/ are served here (the default), or false
   * when an OPS_LISTEN_PORT listener serves them instead (buildOpsApp()).
   */
  opsRoutes?: boolean;
}

/**
 * Builds the HTTP application from its dependencies. It never listens and
 * never creates infrastructure: the caller owns both (see src/server.ts).
 */
export function buildApp(deps: AppDeps): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    // Fastify's two lines per request are replaced by one access line (ACCESS_LOG).
    logController: new LogController({ disableRequestLogging: true }),
    // A request id given by a proxy in front is kept, so its logs and ours join up.
    requestIdHeader: 'x-request-id',
    trustProxy: deps.trustedProxies && deps.trustedProxies.length > 0 ? deps.trustedProxies : false,
    // HEAD is answered from metadata alone, not by running GET and dropping the body.
    exposeHeadRoutes: false,
    routerOptions: {
      ignoreTrailingSlash: true,
      // A client configured with base URL "http://host/" sends "//files/...".
      ignoreDuplicateSlashes: true,
      // Paths are validated by our own rules (1,024 bytes), not cut off by the router's default of 100.
      maxParamLength: 16 * 1024,
    },
    // A 5 GiB upload from a slow client may legitimately take hours; what we
    // bound is silence (connectionTimeout), not total duration.
    requestTimeout: 0,
    connectionTimeout: deps.clientIdleTimeoutSeconds * 1000,
    keepAliveTimeout: 65_000,
    // Our own 503 while closing (below): Fastify's is JSON, not our error format.
    return503OnClosing: false,
    forceCloseConnections: 'idle',
    // The router rejects undecodable URLs before any handler runs; answer in our error format.
    frameworkErrors: (err, request, reply) =>
      sendError(
        request,
        reply,
        err.code === 'FST_ERR_BAD_URL' ? invalidPath('malformed percent-encoding') : err,
      ),
  });

  // Upload bodies are files of any type: never parse them. Leaving the stream
  // unread here lets the PUT handler stream it with backpressure.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null));

  if (deps.accessLog) registerAccessLog(app);
  if (deps.metrics) registerHttpMetrics(app, deps.metrics.http);
  keepConnectionsWaitingOnUs(app, deps.clientIdleTimeoutSeconds * 1000);
  settleUnreadBodies(app);
  // After SIGTERM, a request on a kept-alive connection is refused with 503
  // (Fastify adds Connection: close), so the client retries elsewhere while
  // the requests in flight finish. After settleUnreadBodies' hook: a request
  // pipelined behind a closing answer is still neither run nor answered.
  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onRequest', (_request, _reply, done) => done(closing ? shuttingDown() : undefined));
  if (deps.access) registerAccessControl(app, deps.access);
  // The raw server's event rather than a Fastify hook: one call per request, before routing.
  const pacer = deps.gcPacer;
  if (pacer?.enabled) app.server.on('request', (req, res) => pacer.track(res, req.socket));

  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  app.setNotFoundHandler(notFoundHandler);

  registerFiletrackerRoutes(app, deps.service, '');
  registerFiletrackerRoutes(app, deps.service, 'ft');

  if (deps.metrics && deps.opsRoutes !== false) {
    registerMetricsRoute(app, deps.metrics.registry);
    registerStatusPage(app);
  }
  registerHealthRoute(app, healthProbes(deps));

  return app;
}

function healthProbes(deps: Pick<AppDeps, 'meta' | 'blobs' | 'service'>) {
  return {
    database: () => deps.meta.check(),
    // Blobs live in the store, uploads pass through TEMP_DIR: both are storage.
    storage: async () => {
      await deps.blobs.check();
      await deps.service.checkTempDir();
    },
  };
}

/**
 * The OPS_LISTEN_PORT listener: /metrics, /metrics/json, the status page and
 * /health (which the page polls), without credentials. It is meant to be
 * bound where only operators reach it (a Prometheus sidecar on localhost),
 * so the public listener needs no operator credentials at all.
 */
export function buildOpsApp(
  deps: Pick<AppDeps, 'meta' | 'blobs' | 'service' | 'logger'> & { metrics: Metrics },
): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
    routerOptions: { ignoreTrailingSlash: true, ignoreDuplicateSlashes: true },
  });
  app.setErrorHandler((err, request, reply) => sendError(request, reply, err));
  registerMetricsRoute(app, deps.metrics.registry);
  registerStatusPage(app);
  registerHealthRoute(app, healthProbes(deps));
  return app;
}
