import pg from 'pg';
import { AppError, type BackendKind, backendUnavailable } from '../errors.js';
import type { Logger } from '../observability/logger.js';

export interface PostgresOptions {
  connectionString?: string | undefined;
  host?: string | undefined;
  port?: number | undefined;
  user?: string | undefined;
  password?: string | undefined;
  database?: string | undefined;
  max: number;
  /** Limit on one query, server side (statement_timeout) and client side; 0 for none. */
  queryTimeoutMs: number;
  /** Limit on getting a connection from the pool or opening one. */
  connectTimeoutMs: number;
  applicationName: string;
}

// bigint (int8) columns hold versions, sizes and millisecond timestamps, all
// far below 2^53: read them as numbers rather than strings.
const types = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8
      ? (value: string) => Number(value)
      : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
};

/** A connection pool with bounded waits everywhere, so a slow or dead database becomes a 503, not a hang. */
export function createPool(options: PostgresOptions, logger: Logger): pg.Pool {
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    host: options.host,
    port: options.port,
    user: options.user,
    password: options.password,
    database: options.database,
    max: options.max,
    connectionTimeoutMillis: options.connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    // 0 = no limit (the lock pool: its waits are bounded by lock_timeout instead).
    statement_timeout: options.queryTimeoutMs > 0 ? options.queryTimeoutMs : undefined,
    // The client-side limit catches a server that stopped answering altogether.
    query_timeout: options.queryTimeoutMs > 0 ? options.queryTimeoutMs + 1000 : undefined,
    application_name: options.applicationName,
    keepAlive: true,
    types,
  });
  // An idle connection that breaks (server restart) is dropped by the pool;
  // without a listener the 'error' event would crash the process.
  pool.on('error', (err) => logger.warn({ err: err.message }, 'idle PostgreSQL connection lost'));
  // A checked-out connection that breaks emits 'error' on the client too (its
  // pending query fails on its own): listen on every client for its lifetime.
  pool.on('connect', (client) => {
    client.on('error', (err) => logger.warn({ err: err.message }, 'PostgreSQL connection lost'));
  });
  return pool;
}

// SQLSTATE classes and codes that mean "the database is unavailable or
// overloaded" rather than "our statement is wrong".
const UNAVAILABLE_STATES = /^(08|53|57P0|58|XX)|^57014$|^55P03$|^40001$|^40P01$/;
const NETWORK = /ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENOTFOUND|EPIPE|EAI_AGAIN/;
const POOL_MESSAGES =
  /timeout exceeded when trying to connect|Connection terminated|connection timeout|Query read timeout|Client has encountered a connection error|Cannot use a pool after calling end/i;

/** Turns database failures into BACKEND_UNAVAILABLE (503); other errors (bugs) pass through. */
export function mapPgError(err: unknown, backend: BackendKind, doing: string): unknown {
  if (err instanceof AppError) return err;
  const e = err as { code?: string; message?: string };
  const code = e?.code ?? '';
  const message = e?.message ?? String(err);
  if (UNAVAILABLE_STATES.test(code) || NETWORK.test(code) || POOL_MESSAGES.test(message)) {
    return backendUnavailable(backend, `${doing}: ${message}`, err);
  }
  return err;
}

/** Retryable transaction conflicts: a deadlock or serialization failure resolved by PostgreSQL. */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: string })?.code;
  return code === '40P01' || code === '40001';
}
