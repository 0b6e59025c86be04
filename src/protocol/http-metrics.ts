import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { answeredError } from './errors.js';

/** The HTTP side of /metrics (SPEC §8): requests, latency, uploads in flight, refusals, backend failures. */
export interface HttpMetrics {
  requests: Counter<'method' | 'endpoint' | 'status'>;
  duration: Histogram<'method' | 'endpoint'>;
  /** Uploads in flight and their sockets' byte counts when they began (both upload gauges read it at scrape time). */
  uploads: Map<FastifyRequest, { socket: Socket; start: number }>;
  checksumRejections: Counter<'reason'>;
  backendErrors: Counter<'backend'>;
}

export function httpMetrics(registry: Registry): HttpMetrics {
  const registers = [registry];
  const uploads = new Map<FastifyRequest, { socket: Socket; start: number }>();
  new Gauge({
    name: 's3dedup_uploads_in_flight',
    help: 'PUT requests being received or stored now',
    registers,
    collect() {
      this.set(uploads.size);
    },
  });
  // Summed at scrape time from the sockets' own counters: nothing per chunk.
  // The read that brought a request's headers may have brought up to 64 KiB
  // of its body too, which is not counted: a small undercount per upload.
  new Gauge({
    name: 's3dedup_upload_bytes_in_flight',
    help: 'Bytes read so far from the connections of the PUT requests in flight, after the read that carried the headers',
    registers,
    collect() {
      let sum = 0;
      for (const { socket, start } of uploads.values()) sum += socket.bytesRead - start;
      this.set(sum);
    },
  });
  return {
    uploads,
    requests: new Counter({
      name: 's3dedup_http_requests_total',
      help: 'HTTP requests answered, by method, endpoint (files, list, version, health, metrics, ui, other) and status',
      labelNames: ['method', 'endpoint', 'status'],
      registers,
    }),
    duration: new Histogram({
      name: 's3dedup_http_request_duration_seconds',
      help: 'Time from the request to the end of its answer, by method and endpoint',
      labelNames: ['method', 'endpoint'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    checksumRejections: new Counter({
      name: 's3dedup_checksum_rejections_total',
      help: 'Uploads refused because the body did not match its hints or was not valid gzip, by reason',
      labelNames: ['reason'],
      registers,
    }),
    backendErrors: new Counter({
      name: 's3dedup_backend_errors_total',
      help: 'Requests answered 503/502 because a backend failed, by backend (database, storage, locks, filetracker)',
      labelNames: ['backend'],
      registers,
    }),
  };
}

/** Low-cardinality endpoint names: the route's kind, never the path. */
export function endpointOf(url: string): string {
  const m = /^\/+(?:ft\/+)?(files|list|version|health|metrics|ui)(?:[/?]|$)/.exec(url);
  return m?.[1] ?? 'other';
}

const REJECTIONS = new Set(['CHECKSUM_MISMATCH', 'SIZE_MISMATCH', 'INVALID_GZIP']);

export function registerHttpMetrics(app: FastifyInstance, m: HttpMetrics): void {
  app.addHook('onRequest', (request, reply, done) => {
    if (request.method === 'PUT') {
      const socket = request.raw.socket;
      m.uploads.set(request, { socket, start: socket.bytesRead });
      // 'close' comes whether the answer was sent or the client went away.
      reply.raw.once('close', () => {
        m.uploads.delete(request);
      });
    }
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const endpoint = endpointOf(request.url);
    m.requests.inc({ method: request.method, endpoint, status: String(reply.statusCode) });
    // Fastify times every request from its start to the answer's end.
    m.duration.observe({ method: request.method, endpoint }, reply.elapsedTime / 1000);
    const err = answeredError(request);
    if (err && REJECTIONS.has(err.code)) m.checksumRejections.inc({ reason: err.code });
    if (err?.backend && (err.code === 'BACKEND_UNAVAILABLE' || err.code === 'BAD_GATEWAY')) {
      m.backendErrors.inc({ backend: err.backend });
    }
    done();
  });
}
