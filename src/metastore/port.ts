/**
 * File and blob metadata. Every method that changes anything runs as one
 * database transaction. Absence is a value (null, 'absent'); a failing database
 * is a thrown error — never an empty answer.
 */
export interface MetaStore {
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
}

export interface PutFileInput {
  path: string;
  version: number;
  blob: { hash: string; logicalSize: number; storedSize: number; known?: boolean };
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
