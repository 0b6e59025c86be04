import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';

/**
 * CLIENT_IDLE_TIMEOUT bounds a client's silence, not ours.
 *
 * Node times a connection out after that long without traffic in either
 * direction and, left to itself, destroys the socket. That is right for a
 * client that stops sending its upload or stops reading our answer, but the
 * same silence happens while the client waits for us: a slow S3 write, a lock
 * wait, an upload paused because the S3 part buffers are spent. Dropping the
 * connection then turns a request that would have succeeded, or failed with a
 * clear 503, into a reset the client cannot tell from a crash. The backends'
 * own timeouts (S3_REQUEST_TIMEOUT, LOCK_TIMEOUT, POSTGRES_QUERY_TIMEOUT)
 * bound those waits instead.
 *
 * With a 'timeout' listener on the server Node leaves the decision to us: the
 * connection is kept (and the timer re-armed) while the client has sent all
 * we let it send and we have not started answering; otherwise it is closed,
 * as Node would have.
 */
export function keepConnectionsWaitingOnUs(app: FastifyInstance, idleMs: number): void {
  const current = new WeakMap<Socket, { req: IncomingMessage; res: ServerResponse }>();
  app.addHook('onRequest', (request, reply, done) => {
    current.set(request.raw.socket, { req: request.raw, res: reply.raw });
    done();
  });
  app.addHook('onResponse', (request, _reply, done) => {
    // A pipelined request may already have taken the socket's entry.
    if (current.get(request.raw.socket)?.req === request.raw) current.delete(request.raw.socket);
    done();
  });
  app.server.on('timeout', (socket: Socket) => {
    const exchange = current.get(socket);
    if (exchange && waitingOnUs(exchange.req, exchange.res)) {
      socket.setTimeout(idleMs);
      return;
    }
    socket.destroy();
  });
}

function waitingOnUs(req: IncomingMessage, res: ServerResponse): boolean {
  // Answering: from here on the client has to read.
  if (res.headersSent) return false;
  // Everything received, or the rest held back by us (backpressure pauses the request).
  return req.complete || req.readableFlowing === false;
}
