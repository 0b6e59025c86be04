import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError, type ErrorCode } from '../errors.js';

/** The one place where error codes become HTTP statuses (SPEC §2 "Errors"). */
const STATUS: Record<ErrorCode, number> = {
  INVALID_PATH: 400,
  INVALID_VERSION: 400,
  MISSING_VERSION: 400,
  INVALID_HEADER: 400,
  CHECKSUM_MISMATCH: 400,
  SIZE_MISMATCH: 400,
  INVALID_GZIP: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  TOO_MANY_ATTEMPTS: 429,
  TOO_LARGE: 413,
  // A backend that is down or slow is never "not found": the client must retry, not conclude.
  BACKEND_UNAVAILABLE: 503,
  LOCK_TIMEOUT: 503,
  // Nobody reads this answer; 499 is what proxies log for it.
  CLIENT_ABORTED: 499,
  // The old Filetracker answered, but not with a file this server can serve.
  BAD_GATEWAY: 502,
  INTERNAL: 500,
};

export interface HttpError {
  status: number;
  message: string;
}

export function httpErrorOf(err: unknown): HttpError {
  if (err instanceof AppError) return { status: STATUS[err.code], message: err.message };
  // Fastify's own 4xx errors (malformed requests caught before our handlers).
  const status = (err as { statusCode?: unknown } | undefined)?.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return { status, message: (err as Error).message };
  }
  return { status: 500, message: 'Internal server error' };
}

/**
 * Header values must be visible ASCII; messages can quote paths in any script.
 * Non-ASCII and control characters are escaped as \uXXXX so the Python client,
 * which shows X-Exception in its exceptions, still gets the whole message.
 */
function headerSafe(message: string): string {
  return message.replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** The error a request was answered with, for the metrics (src/protocol/http-metrics.ts). */
const answered = new WeakMap<FastifyRequest, AppError>();

export function answeredError(request: FastifyRequest): AppError | undefined {
  return answered.get(request);
}

/** Body of one line, the same line in X-Exception, text/plain. */
export function sendError(
  request: FastifyRequest,
  reply: FastifyReply,
  err: unknown,
): FastifyReply {
  const { status, message } = httpErrorOf(err);
  if (err instanceof AppError) answered.set(request, err);
  const line = message.replace(/[\r\n]+/g, ' ');
  if (status >= 500) request.log.error({ err }, line);
  else request.log.debug({ status, reason: line }, 'request refused');
  if (status === 499) return reply; // the client is gone; nothing to send
  // RFC 9110 §11.6.1: a 401 names the scheme, or clients (requests, curl) never send credentials.
  if (status === 401) reply.header('www-authenticate', 'Basic realm="s3dedup"');
  if (err instanceof AppError && err.retryAfterSeconds !== undefined) {
    reply.header('retry-after', String(err.retryAfterSeconds));
  }
  // A body still arriving is settled as the answer goes out (src/protocol/body.ts).
  return reply
    .code(status)
    .header('content-type', 'text/plain; charset=utf-8')
    .header('x-exception', headerSafe(line))
    .send(line);
}
