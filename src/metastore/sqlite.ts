import { mkdirSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { backendUnavailable, contentCollected } from '../errors.js';
import { CatalogForwarder } from './catalog.js';
import type {
  BlobRecord,
  DeleteFileResult,
  FileRecord,
  ListQuery,
  MetaStore,
  PutFileInput,
  PutFileResult,
} from './port.js';
import { prefixUpperBound } from './prefix.js';
import { type BlobRow, blobRecord, type FileRow, fileRecord } from './rows.js';
import { SqliteCatalog } from './sqlite-catalog.js';

/**
 * Schema migrations, applied in order at start-up; PRAGMA user_version records
 * how many have run. Append only: a released migration never changes.
 */
const MIGRATIONS: string[] = [
  `
  CREATE TABLE blobs (
    hash         TEXT    PRIMARY KEY,
    refcount     INTEGER NOT NULL CHECK (refcount >= 0),
    logical_size INTEGER NOT NULL,
    stored_size  INTEGER NOT NULL,
    zero_since   INTEGER,                 -- ms since epoch, set while refcount = 0
    created_at   INTEGER NOT NULL
  ) WITHOUT ROWID;
  -- The cleaner looks for unreferenced blobs; keep that cheap however many blobs there are.
  CREATE INDEX blobs_unreferenced ON blobs (zero_since) WHERE refcount = 0;

  -- TEXT compares with the BINARY collation: bytewise on UTF-8, the order /list promises,
  -- and what lets "path > ? AND path < ?" walk a directory through the primary key.
  CREATE TABLE files (
    path       TEXT    PRIMARY KEY,
    hash       TEXT    NOT NULL REFERENCES blobs (hash),
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX files_hash ON files (hash);
  `,
  // What a read, fsck or the cleaner found wrong with a blob's object, until
  // a PUT of its content stores it again (issue #11).
  `
  ALTER TABLE blobs ADD COLUMN damage TEXT CHECK (damage IN ('missing', 'corrupt'));
  `,
  // The store's totals, kept by triggers in the same transactions as the
  // blob rows they add up, so /metrics reads one row instead of the blobs
  // table (issue #13). The same sums as totals() computes from scratch.
  `
  CREATE TABLE store_totals (
    slot                 INTEGER PRIMARY KEY,
    files                INTEGER NOT NULL,
    logical_bytes        INTEGER NOT NULL,
    blobs                INTEGER NOT NULL,
    unique_logical_bytes INTEGER NOT NULL,
    stored_bytes         INTEGER NOT NULL
  );
  INSERT INTO store_totals
    SELECT 0, coalesce(sum(refcount), 0), coalesce(sum(refcount * logical_size), 0), count(*),
           coalesce(sum(CASE WHEN refcount > 0 THEN logical_size ELSE 0 END), 0),
           coalesce(sum(stored_size), 0)
      FROM blobs;
  CREATE TRIGGER blobs_totals_insert AFTER INSERT ON blobs BEGIN
    UPDATE store_totals SET
      files = files + NEW.refcount,
      logical_bytes = logical_bytes + NEW.refcount * NEW.logical_size,
      blobs = blobs + 1,
      unique_logical_bytes = unique_logical_bytes + CASE WHEN NEW.refcount > 0 THEN NEW.logical_size ELSE 0 END,
      stored_bytes = stored_bytes + NEW.stored_size;
  END;
  CREATE TRIGGER blobs_totals_delete AFTER DELETE ON blobs BEGIN
    UPDATE store_totals SET
      files = files - OLD.refcount,
      logical_bytes = logical_bytes - OLD.refcount * OLD.logical_size,
      blobs = blobs - 1,
      unique_logical_bytes = unique_logical_bytes - CASE WHEN OLD.refcount > 0 THEN OLD.logical_size ELSE 0 END,
      stored_bytes = stored_bytes - OLD.stored_size;
  END;
  CREATE TRIGGER blobs_totals_update AFTER UPDATE OF refcount, logical_size, stored_size ON blobs BEGIN
    UPDATE store_totals SET
      files = files + NEW.refcount - OLD.refcount,
      logical_bytes = logical_bytes + NEW.refcount * NEW.logical_size - OLD.refcount * OLD.logical_size,
      unique_logical_bytes = unique_logical_bytes
        + CASE WHEN NEW.refcount > 0 THEN NEW.logical_size ELSE 0 END
        - CASE WHEN OLD.refcount > 0 THEN OLD.logical_size ELSE 0 END,
      stored_bytes = stored_bytes + NEW.stored_size - OLD.stored_size;
  END;
  `,
];

export interface SqliteOptions {
  path: string;
  /**
   * How long a request waits while another process holds the database (ms)
   * before it fails with 503. The server passes LOCK_TIMEOUT.
   */
  busyTimeoutMs?: number;
}

/**
 * SQLite metadata (the embedded default). better-sqlite3 is synchronous: each
 * call is a few microseconds on one connection, and a transaction can never
 * interleave with another request's, which is what makes every change atomic.
 *
 * Being synchronous, it must never wait inside a call: SQLite's own busy
 * handler sleeps on the event loop's thread, and while another process (a
 * backup, an operator's sqlite3 shell) held a write transaction, one PUT
 * stopped the whole server, /version included, for the whole busy timeout.
 * So the busy timeout is 0 and a call that finds the database locked is
 * retried on a timer (busy()), until `busyTimeoutMs` has passed. Readers
 * rarely meet the lock at all (WAL mode lets them read beside a writer).
 */
export class SqliteMetaStore extends CatalogForwarder implements MetaStore {
  private readonly db: Database.Database;
  private readonly stmts;
  private readonly putTx;
  private readonly deleteTx;
  private readonly walPath: string | null;
  private wal: FileHandle | null = null;
  /** The WAL fsync under way, and the one that will follow it (see syncWal()). */
  private syncRunning: Promise<void> | null = null;
  private syncQueued: Promise<void> | null = null;
  /** Changes waiting for the next group commit (see write()). */
  private queue: PendingChange[] = [];
  /** A flush is scheduled (now, or after a pause while the database is locked). */
  private flushScheduled = false;
  /** Flushes in a row that found the database locked. */
  private busyFlushes = 0;
  private readonly busyTimeoutMs: number;

  constructor(options: SqliteOptions) {
    super();
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    this.db = new Database(options.path);
    this.db.pragma('journal_mode = WAL');
    // A change is on disk before it is acknowledged (SPEC §3 invariant 3),
    // power loss included. SQLite's synchronous=FULL would fsync the WAL
    // inside every commit, on the event loop's thread, where it was the
    // largest single cost of a small-file PUT. Instead commits run with
    // NORMAL (no fsync) and write() fsyncs the WAL file itself, on the
    // thread pool, before it answers: the same guarantee as FULL (which
    // syncs exactly that file after each commit), one fsync per group of
    // commits. An in-memory database has nothing to sync.
    this.walPath = options.path === ':memory:' ? null : `${options.path}-wal`;
    this.db.pragma(`synchronous = ${this.walPath === null ? 'FULL' : 'NORMAL'}`);
    this.db.pragma('foreign_keys = ON');
    this.busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    // Start-up may block: nothing is served yet, and instances may migrate together.
    this.db.pragma(`busy_timeout = ${this.busyTimeoutMs}`);
    migrate(this.db);
    this.db.pragma('busy_timeout = 0');

    const db = this.db;
    this.stmts = {
      getFile: db.prepare<[string], FileRow>(
        `SELECT f.path, f.hash, f.version, b.logical_size, b.stored_size
           FROM files f JOIN blobs b ON b.hash = f.hash WHERE f.path = ?`,
      ),
      getBlob: db.prepare<[string], BlobRow>(
        'SELECT hash, refcount, logical_size, stored_size, zero_since, damage FROM blobs WHERE hash = ?',
      ),
      fileForUpdate: db.prepare<[string], { hash: string; version: number }>(
        'SELECT hash, version FROM files WHERE path = ?',
      ),
      insertBlob: db.prepare(
        `INSERT INTO blobs (hash, refcount, logical_size, stored_size, zero_since, created_at)
         VALUES (@hash, 0, @logicalSize, @storedSize, @now, @now) ON CONFLICT (hash) DO NOTHING`,
      ),
      upsertFile: db.prepare(
        `INSERT INTO files (path, hash, version, updated_at) VALUES (@path, @hash, @version, @now)
         ON CONFLICT (path) DO UPDATE SET hash = excluded.hash, version = excluded.version,
                                          updated_at = excluded.updated_at`,
      ),
      deleteFile: db.prepare<[string]>('DELETE FROM files WHERE path = ?'),
      incRef: db.prepare<[string]>(
        'UPDATE blobs SET refcount = refcount + 1, zero_since = NULL WHERE hash = ?',
      ),
      decRef: db.prepare<[number, string]>(
        `UPDATE blobs SET refcount = refcount - 1,
                          zero_since = CASE WHEN refcount = 1 THEN ? ELSE zero_since END
         WHERE hash = ?`,
      ),
      listAll: db.prepare<[string, number, number], { path: string }>(
        'SELECT path FROM files WHERE path > ? AND version <= ? ORDER BY path LIMIT ?',
      ),
      listRange: db.prepare<[string, string, number, number], { path: string }>(
        'SELECT path FROM files WHERE path > ? AND path < ? AND version <= ? ORDER BY path LIMIT ?',
      ),
    };

    this.putTx = db.transaction((input: PutFileInput): PutFileResult => {
      const { path, version, blob, now } = input;
      if (blob.known) {
        if (!this.stmts.getBlob.get(blob.hash)) throw contentCollected(blob.hash);
      } else {
        this.stmts.insertBlob.run({
          hash: blob.hash,
          logicalSize: blob.logicalSize,
          storedSize: blob.storedSize,
          now,
        });
      }
      const current = this.stmts.fileForUpdate.get(path);
      if (current && current.version > version) return { applied: false, version: current.version };
      this.stmts.upsertFile.run({ path, hash: blob.hash, version, now });
      if (current?.hash !== blob.hash) {
        this.stmts.incRef.run(blob.hash);
        if (current) this.stmts.decRef.run(now, current.hash);
      }
      return { applied: true, version };
    });

    this.deleteTx = db.transaction(
      (path: string, version: number, now: number): DeleteFileResult => {
        const current = this.stmts.fileForUpdate.get(path);
        if (!current) return { outcome: 'absent' };
        if (current.version > version) return { outcome: 'kept', version: current.version };
        this.stmts.deleteFile.run(path);
        this.stmts.decRef.run(now, current.hash);
        return { outcome: 'deleted', version: current.version };
      },
    );
    this.catalog = new SqliteCatalog(
      db,
      (query) => this.read(query),
      (change) => this.write(change),
    );
  }

  // The cleaner's, fsck's and stats' queries (src/metastore/sqlite-catalog.ts).
  protected readonly catalog: SqliteCatalog;

  async getFile(path: string): Promise<FileRecord | null> {
    const row = await this.read(() => this.stmts.getFile.get(path));
    return row ? fileRecord(row) : null;
  }

  async getBlob(hash: string): Promise<BlobRecord | null> {
    const row = await this.read(() => this.stmts.getBlob.get(hash));
    return row ? blobRecord(row) : null;
  }

  /** Runs a query, retrying on a timer while another process holds a lock it needs. */
  private async read<T>(query: () => T): Promise<T> {
    const deadline = Date.now() + this.busyTimeoutMs;
    for (let attempt = 0; ; attempt++) {
      try {
        return query();
      } catch (err) {
        if (!isBusy(err) || Date.now() >= deadline) throw mapSqliteError(err);
      }
      await sleep(busyPause(attempt));
    }
  }

  putFile(input: PutFileInput): Promise<PutFileResult> {
    return this.write(() => this.putTx(input));
  }

  deleteFile(input: { path: string; version: number; now: number }): Promise<DeleteFileResult> {
    return this.write(() => this.deleteTx(input.path, input.version, input.now));
  }

  /**
   * Group commit. Every change must be on disk before it is answered, and
   * under load that fsync, not the SQL, bounds small-file PUTs. Changes
   * requested in the same turn of the event loop are applied in one
   * IMMEDIATE transaction, each inside its own savepoint (a nested
   * better-sqlite3 transaction), so one failing change rolls back alone
   * while the others commit with a single fsync. No caller hears back
   * before the commit is on disk (syncWal); if the commit itself fails, every
   * change in the batch fails with it and none is applied.
   */
  private write<T>(change: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({
        change,
        resolve: resolve as (value: unknown) => void,
        reject,
        deadline: Date.now() + this.busyTimeoutMs,
      });
      this.scheduleFlush(0);
    });
  }

  private scheduleFlush(pauseMs: number): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    const run = () => {
      this.flushScheduled = false;
      this.flush();
    };
    if (pauseMs === 0) setImmediate(run);
    else setTimeout(run, pauseMs);
  }

  private flush(): void {
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const outcomes: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
    try {
      // IMMEDIATE takes the write lock up front, so the read of the current
      // version and the write that depends on it cannot be split by another process.
      this.db
        .transaction(() => {
          for (const item of batch) {
            try {
              outcomes.push({ ok: true, value: item.change() });
            } catch (error) {
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (error) {
      if (isBusy(error)) {
        this.retryWhenFree(batch, error);
        return;
      }
      for (const item of batch) item.reject(mapSqliteError(error));
      return;
    }
    this.busyFlushes = 0;
    const answer = () =>
      batch.forEach((item, i) => {
        const outcome = outcomes[i];
        if (outcome?.ok) item.resolve(outcome.value);
        else item.reject(outcome ? mapSqliteError(outcome.error) : new Error('change not applied'));
      });
    if (!outcomes.some((o) => o.ok)) {
      answer();
      return;
    }
    this.syncWal().then(answer, (error: unknown) => {
      // Committed but perhaps not durable: the client must not count on it, and retries.
      const failure = backendUnavailable(
        'database',
        `syncing the SQLite WAL failed: ${String(error)}`,
        error,
      );
      for (const item of batch) item.reject(failure);
    });
  }

  /**
   * Another process holds the write lock (nothing of the batch was applied):
   * try again after a pause, failing the changes that have waited their
   * busyTimeoutMs. Changes arriving meanwhile join the same attempt.
   */
  private retryWhenFree(batch: PendingChange[], error: unknown): void {
    const now = Date.now();
    const waiting = batch.filter((item) => {
      if (now < item.deadline) return true;
      item.reject(
        backendUnavailable(
          'database',
          `the SQLite database stayed locked by another process for ${this.busyTimeoutMs} ms`,
          error,
        ),
      );
      return false;
    });
    this.queue = [...waiting, ...this.queue];
    if (this.queue.length > 0) this.scheduleFlush(busyPause(this.busyFlushes++));
  }

  /**
   * Resolves once every commit made before the call is on disk. An fsync
   * already running may have started before the latest commit, so callers
   * arriving during one share the next; that is the whole group commit.
   */
  private syncWal(): Promise<void> {
    if (this.walPath === null) return Promise.resolve();
    if (this.syncRunning === null) {
      this.syncRunning = this.fsyncWal().finally(() => {
        this.syncRunning = null;
      });
      return this.syncRunning;
    }
    this.syncQueued ??= this.syncRunning
      .catch(() => {})
      .then(() => {
        this.syncQueued = null;
        return this.syncWal();
      });
    return this.syncQueued;
  }

  private async fsyncWal(): Promise<void> {
    // Opened once: in WAL mode SQLite keeps the -wal file while a connection
    // is open (a checkpoint rewinds it, never replaces it), so this
    // descriptor stays on the file SQLite writes.
    this.wal ??= await open(this.walPath as string, 'r');
    await this.wal.datasync();
  }

  async listFiles(query: ListQuery): Promise<string[]> {
    const after = query.after ?? query.prefix;
    const upper = prefixUpperBound(query.prefix);
    const rows = await this.read(() =>
      upper === null
        ? this.stmts.listAll.all(after, query.maxVersion, query.limit)
        : this.stmts.listRange.all(after, upper, query.maxVersion, query.limit),
    );
    return rows.map((r) => r.path);
  }

  async check(): Promise<void> {
    await this.read(() => this.db.prepare('SELECT 1').get());
  }

  async close(): Promise<void> {
    await this.syncQueued?.catch(() => {});
    await this.syncRunning?.catch(() => {});
    await this.wal?.close().catch(() => {});
    this.wal = null;
    if (this.db.open) this.db.close();
  }

  /** For tests and fsck: direct access to the database. */
  get database(): Database.Database {
    return this.db;
  }
}

function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > MIGRATIONS.length) {
    throw new Error(
      `SQLite schema version ${current} is newer than this s3dedup knows (${MIGRATIONS.length}); upgrade s3dedup`,
    );
  }
  db.transaction(() => {
    for (let v = current; v < MIGRATIONS.length; v++) {
      db.exec(MIGRATIONS[v] as string);
    }
    db.pragma(`user_version = ${MIGRATIONS.length}`);
  }).immediate();
}

interface PendingChange {
  change: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
  /** When the change stops waiting for a database another process holds. */
  deadline: number;
}

function isBusy(err: unknown): boolean {
  return err instanceof Database.SqliteError && /^SQLITE_BUSY/.test(err.code);
}

/** Pauses between attempts on a locked database: short at first (most locks are brief), then 50 ms. */
function busyPause(attempt: number): number {
  return Math.min(50, 2 ** attempt);
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

// The database failing (locked by another process past the busy timeout, disk
// full or broken, file gone) rather than our statements being wrong.
const UNAVAILABLE = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|READONLY|CORRUPT|NOTADB|PROTOCOL)/;

function mapSqliteError(err: unknown): unknown {
  if (err instanceof Database.SqliteError && UNAVAILABLE.test(err.code)) {
    return backendUnavailable('database', err.message, err);
  }
  if (err instanceof TypeError && err.message.includes('database connection is not open')) {
    return backendUnavailable('database', 'the database is closed', err);
  }
  return err;
}
