/**
 * File and blob metadata. Every method that changes anything runs as one
 * database transaction. Absence is a value (null, 'absent'); a failing database
 * is a thrown error — never an empty answer.
 */
export interface MetaStore extends BlobCatalog {
  /** The file under `path` with the sizes of its blob, or null. */
  getFile(path: string): Promise<FileRecord | null>;

  getBlob(hash: string): Promise<BlobRecord | null>;

  /**
   * Points `path` at `blob` with `version`, in one transaction:
   * - a `known` blob (the caller found its row) must still have its row, or
   *   the call fails with CONTENT_COLLECTED-style 503 and changes nothing: the
   *   row is never re-created over an object the cleaner may have removed;
   * - otherwise the blob's row is created if missing (refcount 0) even when the
   *   file is not changed, so an uploaded object is always known to the cleaner;
   * - if the stored version is strictly newer, nothing else changes
   *   (`applied: false` and the stored version);
   * - otherwise the path is upserted and both blobs' reference counts adjusted;
   *   a blob whose count drops to 0 records `zeroSince = now`.
   */
  putFile(input: PutFileInput): Promise<PutFileResult>;

  /**
   * Removes `path` if its stored version is not newer than `version`, adjusting
   * the blob's count in the same transaction.
   */
  deleteFile(input: { path: string; version: number; now: number }): Promise<DeleteFileResult>;

  /**
   * Full paths under `prefix` (which is "" or ends with "/") with
   * version <= maxVersion, sorted bytewise, strictly after `after`, at most `limit`.
   */
  listFiles(query: ListQuery): Promise<string[]>;

  /** A cheap liveness probe for /health. */
  check(): Promise<void>;

  close(): Promise<void>;
}

export interface FileRecord {
  path: string;
  hash: string;
  version: number;
  logicalSize: number;
  storedSize: number;
}

export interface BlobRecord {
  hash: string;
  refcount: number;
  logicalSize: number;
  storedSize: number;
  /** Milliseconds since the epoch when refcount last reached 0; null while referenced. */
  zeroSince: number | null;
  /** What a read, fsck or the cleaner found wrong with its object, until it is stored again. */
  damage: BlobDamage | null;
}

/** The blob's object is not in the store, or its bytes are not its content. */
export type BlobDamage = 'missing' | 'corrupt';

export interface PutFileInput {
  path: string;
  version: number;
  blob: {
    hash: string;
    logicalSize: number;
    storedSize: number;
    known?: boolean;
  };
  /** Milliseconds since the epoch. */
  now: number;
}

export type PutFileResult =
  | { applied: true; version: number }
  | { applied: false; version: number };

export type DeleteFileResult =
  | { outcome: 'absent' }
  | { outcome: 'kept'; version: number }
  | { outcome: 'deleted'; version: number };

export interface ListQuery {
  prefix: string;
  maxVersion: number;
  after: string | null;
  limit: number;
}

/**
 * Blob rows as the cleaner, fsck and stats read and change them. Pages are
 * ordered by hash and start strictly after `after`, so any number of blobs
 * is walked with constant memory.
 */
export interface BlobCatalog {
  /**
   * Unreferenced blobs whose zeroSince is at most `before`, oldest first
   * (ordered by zeroSince, then hash, strictly after `after`).
   */
  listUnreferenced(query: {
    before: number;
    after: { zeroSince: number; hash: string } | null;
    limit: number;
  }): Promise<BlobRecord[]>;

  /**
   * Deletes the rows of those of `hashes` that are still unreferenced since
   * at most `before` and that no path points at, whatever their count says
   * (a blob referenced again meanwhile keeps its row), in one transaction;
   * returns the rows deleted.
   */
  deleteUnreferenced(hashes: string[], before: number): Promise<BlobRecord[]>;

  /** Those of `hashes` that have a row. */
  existingBlobs(hashes: string[]): Promise<Set<string>>;

  /** Every blob. */
  listBlobs(page: Page): Promise<BlobRecord[]>;

  /** How many paths point at each of `hashes` (those with none are absent from the map). */
  countPaths(hashes: string[]): Promise<Map<string, number>>;

  /** A blob's refcount and zeroSince beside the paths pointing at it, read together; null without a row. */
  referenceCount(hash: string): Promise<Miscount | null>;

  /** Sets a blob's refcount to the number of paths pointing at it, and zeroSince to match. */
  recount(hash: string, now: number): Promise<void>;

  /** The first `limit` paths (bytewise) pointing at the blob. */
  pathsOf(hash: string, limit: number): Promise<string[]>;

  /** Records what was found wrong with a blob's object (null: nothing any more). */
  markDamage(hash: string, damage: BlobDamage | null): Promise<void>;

  /**
   * The damaged blob's object has been stored again: clears the mark and
   * records the new object's size. False when the row is gone.
   */
  markRestored(hash: string, storedSize: number): Promise<boolean>;

  /**
   * Gives up a blob whose content is lost: removes every path pointing at it
   * and its row, in one transaction; returns how many paths went.
   */
  dropBlob(hash: string): Promise<number>;

  /** Counts and sizes of the whole store, added up from every blob row (`stats`, fsck). */
  totals(): Promise<StoreTotals>;

  /**
   * The same figures as totals(), kept up to date by the database itself in
   * the transactions that change blob rows (migration 3): cheap enough for
   * every /metrics scrape, and right with several instances on one database.
   */
  keptTotals(): Promise<StoreTotals>;

  /**
   * The kept totals and the added-up ones, read in one snapshot, so that they
   * agree however many writes go on meanwhile unless the kept ones drifted
   * (fsck). Slow: adds up every blob row.
   */
  totalsBothWays(): Promise<{ kept: StoreTotals; counted: StoreTotals }>;

  /**
   * Corrects the kept totals by what they differ from the added-up ones in
   * one snapshot (fsck --repair). PostgreSQL writers go on meanwhile; SQLite's
   * do wait, as for any write, while the blob rows are added up.
   */
  resetKeptTotals(): Promise<void>;
}

export interface Page {
  after: string | null;
  limit: number;
}

export interface Miscount {
  hash: string;
  refcount: number;
  /** Paths pointing at the blob. */
  paths: number;
  zeroSince: number | null;
}

export interface StoreTotals {
  files: number;
  /** Uncompressed bytes of all files, as clients see them (each path counted). */
  logicalBytes: number;
  blobs: number;
  /** Uncompressed bytes of the distinct contents. */
  uniqueLogicalBytes: number;
  /** Bytes in the blob store (compressed). */
  storedBytes: number;
}
