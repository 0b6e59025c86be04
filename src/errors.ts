/**
 * The one error type the core raises. Each error carries a stable code; the
 * protocol layer (src/protocol/errors.ts) is the only place that turns codes
 * into HTTP statuses, so the core never knows about HTTP.
 */
export type ErrorCode =
  | 'INVALID_PATH'
  | 'INVALID_VERSION'
  | 'MISSING_VERSION'
  | 'INVALID_HEADER'
  | 'CHECKSUM_MISMATCH'
  | 'SIZE_MISMATCH'
  | 'INVALID_GZIP'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  /** No credentials, or wrong ones (AUTH_USERS_FILE). */
  | 'UNAUTHORIZED'
  /** Right credentials, but the user's role does not allow the request. */
  | 'FORBIDDEN'
  /** Too many failed logins from the client's address; `retryAfterSeconds` says when to try again. */
  | 'TOO_MANY_ATTEMPTS'
  | 'TOO_LARGE'
  | 'BACKEND_UNAVAILABLE'
  | 'LOCK_TIMEOUT'
  | 'CLIENT_ABORTED'
  /** The old Filetracker answered with something unusable (live migration's fallback). */
  | 'BAD_GATEWAY'
  | 'INTERNAL';

/** Which dependency failed, for logs and metrics. */
export type BackendKind = 'database' | 'storage' | 'locks' | 'filetracker';

/**
 * A dependency that cannot be used as configured (a backend this build does
 * not have, an S3 server lacking what the store needs): start-up stops with
 * the message alone, which says what is wrong.
 */
export class StartupError extends Error {}

export class AppError extends Error {
  readonly code: ErrorCode;
  readonly backend: BackendKind | undefined;
  /** When the client may try again (TOO_MANY_ATTEMPTS): sent as Retry-After. */
  readonly retryAfterSeconds: number | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; backend?: BackendKind; retryAfterSeconds?: number },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'AppError';
    this.code = code;
    this.backend = options?.backend;
    this.retryAfterSeconds = options?.retryAfterSeconds;
  }
}

export function isAppError(err: unknown, code?: ErrorCode): err is AppError {
  return err instanceof AppError && (code === undefined || err.code === code);
}

export const invalidPath = (why: string) => new AppError('INVALID_PATH', `Invalid path: ${why}`);
export const invalidVersion = (value: string) =>
  new AppError(
    'INVALID_VERSION',
    `Invalid last_modified ${JSON.stringify(value)}: expected an RFC 2822 date such as "Fri, 13 Feb 2009 23:31:30 -0000"`,
  );
export const missingVersion = () =>
  new AppError(
    'MISSING_VERSION',
    'Missing last_modified: give it as a query parameter or a Last-Modified header',
  );
export const invalidHeader = (name: string, why: string) =>
  new AppError('INVALID_HEADER', `Invalid ${name} header: ${why}`);
export const checksumMismatch = (declared: string, actual: string) =>
  new AppError(
    'CHECKSUM_MISMATCH',
    `SHA256-Checksum mismatch: the header says ${declared} but the uncompressed body hashes to ${actual}; nothing was stored`,
  );
export const sizeMismatch = (declared: number, actual: string) =>
  new AppError(
    'SIZE_MISMATCH',
    `Logical-Size mismatch: the header says ${declared} bytes but the uncompressed body is ${actual} bytes; nothing was stored`,
  );
export const invalidGzip = (why: string) =>
  new AppError(
    'INVALID_GZIP',
    `Body labelled Content-Encoding: gzip is not valid gzip (${why}); nothing was stored`,
  );
export const notFound = (what: string) => new AppError('NOT_FOUND', `${what} not found`);
export const tooLarge = (limit: number) =>
  new AppError(
    'TOO_LARGE',
    `Upload exceeds MAX_UPLOAD_SIZE (${limit} bytes uncompressed); nothing was stored`,
  );
export const backendUnavailable = (backend: BackendKind, what: string, cause?: unknown) =>
  new AppError('BACKEND_UNAVAILABLE', `${backend} unavailable: ${what}`, { cause, backend });
/** A request that arrived after SIGTERM, on a connection kept alive from before. */
export const shuttingDown = () =>
  new AppError(
    'BACKEND_UNAVAILABLE',
    'Server shutting down: retry the request (on another instance, or after the restart)',
  );
export const lockTimeout = (key: string, ms: number) =>
  new AppError('LOCK_TIMEOUT', `Timed out after ${ms} ms waiting for lock ${key}; retry later`, {
    backend: 'locks',
  });
/**
 * The cleaner removed a content between our check and our use of it: rare (it
 * must have been unreferenced for CLEANER_GRACE), and retrying fixes it, so 503.
 */
export const contentCollected = (hash: string) =>
  new AppError(
    'BACKEND_UNAVAILABLE',
    `content ${hash} was garbage-collected during the upload; retry`,
    {
      backend: 'storage',
    },
  );
/** The content was found damaged (its object missing or corrupt) while the upload read its body. */
export const contentDamaged = (hash: string) =>
  new AppError(
    'BACKEND_UNAVAILABLE',
    `content ${hash} was found damaged during the upload; retry (the retry stores it again)`,
    { backend: 'storage' },
  );
export const unauthorized = (why: string) =>
  new AppError('UNAUTHORIZED', `Authentication required: ${why}`);
export const forbidden = (user: string, what: string) =>
  new AppError('FORBIDDEN', `User ${user} may not ${what}: its role is read`);
export const tooManyAttempts = (retryAfterSeconds: number) =>
  new AppError(
    'TOO_MANY_ATTEMPTS',
    `Too many failed logins from this address; retry in ${retryAfterSeconds} s`,
    { retryAfterSeconds },
  );
export const loginsBusy = (retryAfterSeconds: number) =>
  new AppError(
    'TOO_MANY_ATTEMPTS',
    `Too many logins waiting for a password check; retry in ${retryAfterSeconds} s`,
    { retryAfterSeconds },
  );
export const clientAborted = () =>
  new AppError('CLIENT_ABORTED', 'Client went away before the request finished');
export const internal = (what: string, cause?: unknown) =>
  new AppError('INTERNAL', what, { cause });
