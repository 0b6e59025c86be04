import type { IncomingMessage } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';

/**
 * The upload body as a stream the core may consume, abandon or destroy
 * without touching the HTTP request itself. stream.pipeline destroys every
 * stream in it on error; if that were the request, a 400 or 413 found
 * mid-upload would reset the connection and the client would never read our
 * answer. This wrapper takes those hits instead, and the error path decides
 * what to do with the rest of the body (src/protocol/errors.ts).
 */
export function uploadBody(request: IncomingMessage): Readable {
  // 64 KiB: a socket read's worth. Every upload in flight holds this much here,
  // so it is kept small for many concurrent uploads (SPEC §9: 64 x 16 MiB).
  const body = new PassThrough({ highWaterMark: 64 * 1024 });
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
