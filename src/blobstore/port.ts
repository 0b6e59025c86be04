import type { Readable } from 'node:stream';

/**
 * Where blob bytes live. Keys are opaque to the store (the layout is the dedup
 * core's business); objects are immutable once created. Absence is a value
 * (null / created: false); every failure is a thrown error, so a broken store
 * can never be mistaken for a missing blob.
 */
export interface BlobStore {
  /**
   * Stores the whole `body` under `key`, atomically: the key either does not
   * exist or holds every byte. An existing key is never overwritten (answer
   * `created: false`, with the size of what is already there), so the bytes
   * under a key cannot change under a reader; unless `beforeCommit` answers
   * 'replace', which overwrites. Where the store cannot create atomically by itself (S3
   * servers without conditional writes) it looks just before creating, and
   * callers that may race on one key serialize from `beforeCommit` until
   * put() returns (the dedup core's `commit:<hash>` lock).
   *
   * `beforeCommit` runs after the last byte has been received and made durable
   * and before the object becomes visible; if it throws, nothing is stored and
   * the error propagates. The dedup core verifies checksums there, and
   * answers 'replace' when, under its commit lock, it finds the object
   * recorded as damaged (missing or corrupt) and restores it.
   *
   * `body` is a stream, or a Buffer when the whole object is already in
   * memory (small uploads), which spares the store a stream's overhead.
   */
  put(key: string, body: Readable | Buffer, options?: PutOptions): Promise<PutResult>;

  /** Opens the object for reading, or null if there is no such key. */
  get(key: string, options?: { signal?: AbortSignal }): Promise<BlobReader | null>;

  stat(key: string, options?: { signal?: AbortSignal }): Promise<BlobInfo | null>;

  /** Removes the object; removing an absent key is not an error. */
  delete(key: string): Promise<void>;

  /**
   * Removes the objects (S3: in batches where the server has DeleteObjects);
   * absent keys are not an error. Throws if any present key could not be removed.
   */
  deleteMany(keys: string[]): Promise<void>;

  /**
   * Every key under `prefix` (all keys when omitted) with its size and age,
   * in ascending (bytewise) key order, page by page: memory stays flat
   * however many objects there are. Uploads in progress are not listed.
   */
  list(options?: { prefix?: string; signal?: AbortSignal }): AsyncIterable<BlobListing>;

  /**
   * Removes what uploads that never finished left behind (S3 multipart
   * uploads, the filesystem store's partial files) when it is older than
   * `olderThan` and, where the key is known, `isOurs(key)`; returns how many.
   */
  removeStaleUploads(olderThan: Date, isOurs: (key: string) => boolean): Promise<number>;

  /** A cheap liveness probe for /health. */
  check(): Promise<void>;

  close(): Promise<void>;
}

export interface PutOptions {
  /** Exact byte count when known in advance (lets S3 use a single PutObject). */
  size?: number | undefined;
  /** May answer a CommitMode; any other answer is a plain create. */
  beforeCommit?: (() => Promise<unknown>) | undefined;
  signal?: AbortSignal | undefined;
}

/** What beforeCommit may ask of the commit: replace whatever the key holds. */
export type CommitMode = 'replace';

export interface PutResult {
  created: boolean;
  /** Size of the object now under the key (ours if created, the existing one otherwise). */
  size: number;
}

export interface BlobReader {
  /**
   * The object's bytes: a stream, or the whole object in one Buffer when the
   * store has already read it (small objects), which a server can send
   * without a stream's per-request overhead.
   */
  body: Readable | Buffer;
  size: number;
}

export interface BlobInfo {
  size: number;
  lastModified: Date;
}

export interface BlobListing extends BlobInfo {
  key: string;
}
