import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { requestUser } from './access-control.js';

/** What a connection had read and written when its previous request ended. */
const marks = new WeakMap<Socket, { read: number; written: number }>();

/**
 * One `info` line per request, as operators of the original server get from
 * gunicorn: method, path with query, status, bytes in and out, duration,
 * request id (`reqId`, also sent back as X-Request-Id) and the client
 * address, taken from X-Forwarded-For only when the connection comes from a
 * proxy in TRUSTED_PROXIES (Fastify's trustProxy), and, with
 * AUTH_USERS_FILE, the user whose credentials were accepted (never the
 * credentials: no header is logged). Bytes are those of the
 * connection since the previous request on it ended: request line, headers
 * and body in; status line, headers and body out. The rest of a body
 * drained after an early answer (src/protocol/body.ts) is read after this
 * line is written, so it counts toward the connection's next request.
 */
export function registerAccessLog(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const socket = request.raw.socket;
    const before = marks.get(socket) ?? { read: 0, written: 0 };
    const now = { read: socket.bytesRead, written: socket.bytesWritten };
    marks.set(socket, now);
    request.log.info(
      {
        method: request.method,
        url: request.url,
        status: reply.statusCode,
        bytesIn: now.read - before.read,
        bytesOut: now.written - before.written,
        ms: reply.elapsedTime,
        client: request.ip,
        user: requestUser(request),
      },
      'access',
    );
    done();
  });
}
