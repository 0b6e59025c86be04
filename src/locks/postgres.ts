import type pg from 'pg';
import { clientAborted, lockTimeout } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { mapPgError } from '../postgres/pool.js';
import { advisoryKey } from './keys.js';
import type { Lock, LockManager, LockMode, LockOptions, LockSession } from './port.js';

/**
 * PostgreSQL advisory locks (LOCKS_TYPE=postgres): mutual exclusion across
 * every instance that shares the database.
 *
 * Session-level advisory locks belong to a connection, so a LockSession checks
 * one connection out of a dedicated lock pool on its first acquire and holds
 * all of that request's locks on it, returning it when the last one is
 * released. A request therefore uses at most one lock connection and never
 * waits for another while holding one, and the lock pool is separate from the
 * query pool, which is only ever held for single queries and transactions:
 * neither pool can deadlock against itself or the other.
 *
 * Waiting is bounded by PostgreSQL's lock_timeout (LOCK_TIMEOUT → 503); a
 * client that goes away cancels its wait (pg_cancel_backend).
 */
export class PostgresLockManager implements LockManager {
  constructor(
    private readonly lockPool: pg.Pool,
    /** For cancelling a wait: a connection other than the waiting one. */
    private readonly queryPool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  session(): LockSession {
    return new PostgresLockSession(this.lockPool, this.queryPool, this.logger);
  }

  async close(): Promise<void> {}
}

interface Held {
  key: string;
  mode: LockMode;
}

class PostgresLockSession implements LockSession {
  private client: pg.PoolClient | null = null;
  private readonly held = new Set<Held>();
  /** Set when the connection failed: it must not go back to the pool. */
  private broken: Error | undefined;

  constructor(
    private readonly lockPool: pg.Pool,
    private readonly queryPool: pg.Pool,
    private readonly logger: Logger,
  ) {}

  async acquire(name: string, mode: LockMode, options: LockOptions): Promise<Lock> {
    if (options.signal?.aborted) throw clientAborted();
    const client = await this.connection();
    const key = advisoryKey(name);
    const fn = mode === 'shared' ? 'pg_advisory_lock_shared' : 'pg_advisory_lock';
    const timeout = Math.max(1, Math.ceil(options.timeoutMs));
    const onAbort = () => {
      this.queryPool.query('SELECT pg_cancel_backend($1)', [processId(client)]).catch(() => {});
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      // Both values are integers we produced; one round trip sets the wait limit and waits.
      // The client-side limit catches a database that stopped answering altogether.
      await client.query(
        bounded(`SET lock_timeout = ${timeout}; SELECT ${fn}(${key})`, timeout + ANSWER_MS),
      );
    } catch (err) {
      const code = (err as { code?: string }).code;
      let failure: unknown;
      if (code === '55P03') failure = lockTimeout(name, options.timeoutMs);
      else if (code === '57014' && options.signal?.aborted) failure = clientAborted();
      else {
        this.broken = err as Error;
        failure = mapPgError(err, 'locks', `taking lock ${name}`);
      }
      // Holding nothing: give the connection back rather than keep it for nothing.
      if (this.held.size === 0) this.returnConnection();
      throw failure;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
    const entry: Held = { key, mode };
    this.held.add(entry);
    return { release: () => this.release(entry) };
  }

  async end(): Promise<void> {
    // A request usually ends holding two locks (its content's and its path's):
    // one round trip drops every lock of the session instead of one per lock.
    if (this.held.size > 0 && this.client && !this.broken) {
      try {
        await this.client.query(bounded('SELECT pg_advisory_unlock_all()', ANSWER_MS));
      } catch (err) {
        // As in release(): PostgreSQL drops a dead session's locks; drop the connection.
        this.broken = err as Error;
        this.logger.warn({ err: (err as Error).message }, 'lock connection lost while releasing');
      }
    }
    this.held.clear();
    this.returnConnection();
  }

  private async connection(): Promise<pg.PoolClient> {
    if (this.client) return this.client;
    try {
      this.client = await this.lockPool.connect();
    } catch (err) {
      throw mapPgError(err, 'locks', 'getting a lock connection');
    }
    return this.client;
  }

  private async release(entry: Held): Promise<void> {
    if (!this.held.delete(entry)) return;
    const client = this.client;
    if (client && !this.broken) {
      const fn = entry.mode === 'shared' ? 'pg_advisory_unlock_shared' : 'pg_advisory_unlock';
      try {
        await client.query(bounded(`SELECT ${fn}(${entry.key})`, ANSWER_MS));
      } catch (err) {
        // The connection is gone, and its locks with it (PostgreSQL releases a
        // dead session's locks): nothing is left held, but drop the connection.
        this.broken = err as Error;
        this.logger.warn({ err: (err as Error).message }, 'lock connection lost while releasing');
      }
    }
    if (this.held.size === 0) this.returnConnection();
  }

  private returnConnection(): void {
    if (!this.client) return;
    this.client.release(this.broken);
    this.client = null;
    this.broken = undefined;
  }
}

/** How long PostgreSQL may take to answer beyond the lock wait itself. */
const ANSWER_MS = 5000;

/** A query with a client-side time limit (pg supports it per query; its types do not say so). */
function bounded(text: string, ms: number): pg.QueryConfig {
  return { text, query_timeout: ms } as pg.QueryConfig;
}

function processId(client: pg.PoolClient): number {
  return (client as unknown as { processID: number }).processID;
}
