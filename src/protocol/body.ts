import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { type Readable, Transform } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** An upload wrapper and the body bytes it has passed on. */
interface BodyState {
  wrapper: Transform;
  received: number;
}
const bodies = new WeakMap<IncomingMessage, BodyState>();

/**
 * The upload body as a stream the core may consume, abandon or destroy
 * without touching the HTTP request itself. stream.pipeline destroys every
 * stream in it on error; if that were the request, a 400 or 413 found
 * mid-upload would reset the connection and the client would never read our
 * answer. This wrapper takes those hits instead, and whatever the core left
 * unread is settled when the answer goes out (settleUnreadBodies()).
 */
export function uploadBody(request: IncomingMessage): Readable {
  // 64 KiB: a socket read's worth. Every upload in flight holds this much here,
  // so it is kept small for many concurrent uploads (SPEC §9: 64 x 16 MiB).
  const state: BodyState = {
    received: 0,
    wrapper: new Transform({
      highWaterMark: 64 * 1024,
      transform(chunk: Buffer, _enc, callback) {
        state.received += chunk.length;
        callback(null, chunk);
      },
    }),
  };
  const body = state.wrapper;
  bodies.set(request, state);
  request.pipe(body);
  // Whoever consumes the body (a pipeline) handles its errors; an abort that
  // lands after they are done, or on a body nobody needed, must not become an
  // unhandled 'error' event that takes the process down.
  body.on('error', () => {});
  // pipe() does not forward errors: a client that disconnects mid-upload
  // must fail the upload, not leave it waiting for bytes forever.
  const onAbort = (err?: Error) => {
    if (!request.complete)
      body.destroy(err ?? Object.assign(new Error('aborted'), { code: 'ECONNRESET' }));
  };
  // Kept for the request's lifetime: an 'error' with no listener would crash the process.
  request.on('error', onAbort);
  request.once('close', () => onAbort());
  body.once('close', () => request.unpipe(body));
  return body;
}

/**
 * Bodies up to this many unread bytes are read to their end after an early
 * answer, and the connection stays open for the client's next request.
 * Clients such as Python's requests send the whole body before they read
 * anything, so these bytes cross the network whatever we do; reading them
 * costs the server little, while closing would cost the client its
 * connection. 64 MiB covers the files of a contest platform but the largest
 * test data, and is read in well under a second on a local network.
 */
export const DRAIN_LIMIT = 64 * 1024 * 1024;
/**
 * Past DRAIN_LIMIT (or with a chunked body of unknown length) the answer
 * says "Connection: close" and the server keeps reading and dropping what
 * still comes for at most LINGER_MS, or until the client stays silent for
 * LINGER_IDLE_MS, before it closes: closing at once would make the kernel
 * answer the bytes still arriving with a reset, which destroys our answer
 * before a client that reads only after sending ever sees it. (nginx's
 * lingering_time and lingering_timeout default to the same 30 s and 5 s.)
 */
export const LINGER_MS = 30_000;
export const LINGER_IDLE_MS = 5_000;

/**
 * SPEC §2, "Early answers": whenever an answer goes out before the request
 * body has been read to its end (an older version, a refused header, 413, a
 * backend failure, on any route), the rest of the body is dealt with here,
 * in one place: drained up to DRAIN_LIMIT with the connection kept for the
 * next request, or past it answered with "Connection: close". Whenever the
 * connection ends after such an answer (past DRAIN_LIMIT, or because the
 * client asked for "Connection: close", spoke HTTP/1.0, or the server is
 * shutting down) it ends with a lingering close. Either way the client gets
 * its answer and nothing waits for a timeout.
 */
export function settleUnreadBodies(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    // RFC 9112 §9.6: after an answer that closes the connection, a request
    // pipelined behind the body is not run (the client never hears of it).
    if (lingering.has(request.raw.socket)) {
      reply.hijack();
      return;
    }
    done();
  });
  app.addHook('onSend', (request, reply, payload, done) => {
    if (!request.raw.complete && !request.raw.destroyed) settleUnreadBody(request, reply);
    done(null, payload);
  });
}

/** Sockets in a lingering close: reading and dropping what still comes, answering nothing more. */
const lingering = new WeakSet<Socket>();

function settleUnreadBody(request: FastifyRequest, reply: FastifyReply): void {
  const raw = request.raw;
  const state = bodies.get(raw);
  if (state) {
    // The core is done with the body (its handler has answered): cut its reader off.
    raw.unpipe(state.wrapper);
    state.wrapper.destroy();
  }
  // Flowing with no 'data' listener: every byte that arrives is dropped.
  raw.resume();
  lingerIfClosing(raw, reply.raw);
  // RFC 9112 §6.3: a request without Transfer-Encoding or Content-Length has
  // no body. Such a request answered at once (a 404, a static file) is not yet
  // `complete` when its answer goes out, and must keep its connection.
  const length =
    raw.headers['transfer-encoding'] !== undefined
      ? Number.NaN
      : Number(raw.headers['content-length'] ?? 0);
  const unread = Number.isSafeInteger(length) ? length - (state?.received ?? 0) : Infinity;
  if (unread > DRAIN_LIMIT) reply.header('connection', 'close');
}

/**
 * Node ends an answer that closes the connection with socket.destroySoon():
 * end our side, then destroy the socket as soon as the answer is flushed,
 * reading nothing more. For this one answer, should Node close, it does a
 * lingering close instead: our answer and FIN go out, and the socket reads
 * and drops the rest of the body until it has all come, the client has
 * closed, or the linger is over. Once the answer is done, the socket's own
 * destroySoon is back (a kept connection's next answer is not affected).
 */
function lingerIfClosing(request: IncomingMessage, response: ServerResponse): void {
  const socket = request.socket as Socket & { destroySoon(): void };
  socket.destroySoon = () => {
    lingering.add(socket);
    if (socket.writable) socket.end();
    const close = () => {
      clearTimeout(total);
      clearTimeout(idle);
      request.off('data', onData);
      // Never before the answer is flushed: that would drop it.
      if (socket.writableFinished) socket.destroy();
      else socket.once('finish', () => socket.destroy());
    };
    const total = setTimeout(close, LINGER_MS);
    const idle = setTimeout(close, LINGER_IDLE_MS);
    const onData = () => idle.refresh();
    request.on('data', onData);
    socket.once('close', () => {
      clearTimeout(total);
      clearTimeout(idle);
    });
    if (request.complete) close();
    else request.once('end', close);
  };
  // Node calls destroySoon from its own 'finish' listener, which runs before this one.
  const restore = () => {
    Reflect.deleteProperty(socket, 'destroySoon');
  };
  response.once('finish', restore);
  response.once('close', restore);
}
