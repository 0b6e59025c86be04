import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import type { Registry } from 'prom-client';
import type {
  BlobInfo,
  BlobListing,
  BlobReader,
  BlobStore,
  PutOptions,
  PutResult,
} from '../blobstore/port.js';
import { hashOfKey } from '../dedup/keys.js';
import type { Logger } from '../observability/logger.js';
import { CacheFiles } from './files.js';
import { CacheFill, type FilledEntry } from './fill.js';
import { type CacheEntry, CacheIndex } from './index.js';
import { type CacheMetrics, cacheMetrics } from './metrics.js';

export interface BlobCacheOptions {
  dir: string;
  maxBytes: number;
  maxEntryBytes: number;
  /** The blob key layout's depth (S3_KEY_SHARDING_DEPTH): keys name the content they hold. */
  keyDepth: number;
  logger: Logger;
  registry?: Registry | undefined;
}

/** Entries up to this size are read on the event loop, as the filesystem store reads small blobs. */
const SYNC_HIT = 64 * 1024;
/** Entries up to this size are read whole, checked and sent from one Buffer; larger ones are streamed. */
const WHOLE_HIT = 1024 * 1024;
/** Read size of the check pass over a large entry, and of its stream afterwards. */
const HIT_CHUNK = 1024 * 1024;
/**
 * How long a GET waits for another GET's fill of the same blob before it
 * reads the object store itself: long enough for any fill that keeps pace
 * with a normal client, short enough that a stalled client cannot hold the
 * others back for long.
 */
const FOLLOW_WAIT_MS = 10_000;

/**
 * A local, bounded cache of blobs in front of an object store (S3). Blobs
 * are named by their content and never rewritten, so an entry can never be
 * stale: the only questions are which blobs to keep and whether an entry's
 * bytes are still the ones that were checked.
 *
 * - A GET that misses streams from the store to the client, filling an entry
 *   on the side (fill.ts): it becomes an entry only after its content hashed
 *   to its key, so nothing partial or unverified is ever served.
 * - Concurrent misses of one blob download it once: the first fills, the
 *   others wait for that fill (at most FOLLOW_WAIT_MS), then read the entry.
 * - A hit checks the entry's size and CRC-32 before its first byte is sent;
 *   an entry that is gone or damaged is dropped and read from the store, so
 *   the folder may be deleted or damaged at any moment.
 * - Entries are per instance and survive restarts: the index is rebuilt from
 *   the folder listing (names and sizes, no file read).
 * - Deletes and replacements of an object drop its entry, so what a GET sends
 *   stays byte-identical to the store's object.
 *
 * Keys that do not follow the blob layout pass through uncached.
 */
export class CachingBlobStore implements BlobStore {
  private readonly index: CacheIndex;
  private readonly files: CacheFiles;
  private readonly metrics: CacheMetrics | null;
  /**
   * Misses in progress by hash, from the object store request to the end of
   * the fill; resolve (never reject) when it has ended either way.
   */
  private readonly filling = new Map<string, Promise<void>>();

  private constructor(
    readonly inner: BlobStore,
    private readonly o: BlobCacheOptions,
  ) {
    // An entry larger than a quarter of the bound would push out too much of the hot set at once.
    this.index = new CacheIndex(o.maxBytes, Math.min(o.maxEntryBytes, Math.floor(o.maxBytes / 4)));
    this.files = new CacheFiles(o.dir);
    this.metrics = o.registry ? cacheMetrics(o.registry) : null;
  }

  /** The cache over `inner`, its index rebuilt from what `dir` holds. */
  static async open(inner: BlobStore, o: BlobCacheOptions): Promise<CachingBlobStore> {
    const cache = new CachingBlobStore(inner, o);
    const { entries, removed } = await cache.files.scan();
    let evicted = 0;
    for (const entry of entries) {
      for (const old of cache.index.add(entry)) {
        await rm(cache.files.entryPath(old), { force: true });
        evicted++;
      }
    }
    cache.updateGauges();
    o.logger.info(
      { dir: o.dir, entries: cache.index.count, bytes: cache.index.bytes, evicted, removed },
      'blob cache opened',
    );
    return cache;
  }

  async get(key: string, options: { signal?: AbortSignal } = {}): Promise<BlobReader | null> {
    const hash = hashOfKey(key, this.o.keyDepth);
    if (hash === null) return this.inner.get(key, options);
    const hit = await this.hit(hash);
    if (hit) return hit;
    const pending = this.filling.get(hash);
    if (pending) {
      // Someone is downloading this blob right now: use their copy once it is in.
      await waitAtMost(pending, FOLLOW_WAIT_MS, options.signal);
      const after = await this.hit(hash);
      if (after) return after;
    }
    this.metrics?.misses.inc();
    // Still filling after the wait (a slow first reader): read past it, uncached.
    if (this.filling.has(hash)) return this.inner.get(key, options);
    // Claimed before the first await, so that a miss arriving meanwhile waits for this one.
    let release!: () => void;
    const claim = new Promise<void>((resolve) => {
      release = () => {
        this.filling.delete(hash);
        resolve();
      };
    });
    this.filling.set(hash, claim);
    let reader: BlobReader | null;
    try {
      reader = await this.inner.get(key, options);
    } catch (err) {
      release();
      throw err;
    }
    if (!reader || !this.index.admit(hash, reader.size)) {
      release();
      return reader;
    }
    return this.fill(hash, reader, release);
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    const hash = hashOfKey(key, this.o.keyDepth);
    const { beforeCommit } = options;
    if (hash === null || !beforeCommit) return this.inner.put(key, body, options);
    let replacing = false;
    const result = await this.inner.put(key, body, {
      ...options,
      beforeCommit: async () => {
        const mode = await beforeCommit();
        replacing = mode === 'replace';
        return mode;
      },
    });
    // The object was replaced (restored after damage): its bytes may differ from the entry's.
    if (replacing) await this.drop(hash);
    return result;
  }

  stat(key: string, options?: { signal?: AbortSignal }): Promise<BlobInfo | null> {
    return this.inner.stat(key, options);
  }

  async delete(key: string): Promise<void> {
    await this.inner.delete(key);
    await this.dropKey(key);
  }

  async deleteMany(keys: string[]): Promise<void> {
    await this.inner.deleteMany(keys);
    for (const key of keys) await this.dropKey(key);
  }

  list(options?: { prefix?: string; signal?: AbortSignal }): AsyncIterable<BlobListing> {
    return this.inner.list(options);
  }

  removeStaleUploads(olderThan: Date, isOurs: (key: string) => boolean): Promise<number> {
    return this.inner.removeStaleUploads(olderThan, isOurs);
  }

  check(): Promise<void> {
    return this.inner.check();
  }

  async close(): Promise<void> {
    await Promise.all(this.filling.values());
    await this.inner.close();
  }

  /** Bytes and entries held now (for tests and the stats output). */
  get usage(): { bytes: number; entries: number } {
    return { bytes: this.index.bytes, entries: this.index.count };
  }

  /** The entry's bytes, checked; null when there is no entry or it turned out gone or damaged. */
  private async hit(hash: string): Promise<BlobReader | null> {
    const entry = this.index.use(hash);
    if (!entry) return null;
    const path = this.files.entryPath(entry);
    let reader: BlobReader | null;
    try {
      reader = entry.size <= SYNC_HIT ? readSmall(path, entry) : await readChecked(path, entry);
    } catch (err) {
      this.o.logger.warn(
        { err, hash, path },
        'blob cache entry unreadable; reading the object store',
      );
      reader = null;
    }
    if (!reader) {
      this.metrics?.damaged.inc();
      await this.drop(hash);
      return null;
    }
    this.metrics?.hits.inc();
    this.metrics?.hitBytes.inc(entry.size);
    return reader;
  }

  /** Sends the store's bytes to the client through a fill, which becomes an entry if they check out. */
  private async fill(hash: string, reader: BlobReader, release: () => void): Promise<BlobReader> {
    let file: FileHandle;
    const path = this.files.fillPath(hash);
    try {
      file = await openFill(path, () => this.files.prepare(hash));
    } catch (err) {
      release();
      this.o.logger.warn({ err, dir: this.o.dir }, 'blob cache: cannot create a fill file');
      this.metrics?.fillsAbandoned.inc({ reason: 'disk' });
      return reader;
    }
    const fill = new CacheFill(hash, reader.size, path, file, (reason) => {
      const kind = reason.startsWith('cut off')
        ? 'cut_off'
        : reason.startsWith('writing')
          ? 'disk'
          : 'invalid';
      this.metrics?.fillsAbandoned.inc({ reason: kind });
      if (kind === 'cut_off') this.o.logger.debug({ hash, reason }, 'blob cache fill cut off');
      else this.o.logger.warn({ hash, reason }, 'blob cache fill abandoned');
    });
    void fill.done
      .then((filled) => this.adopt(filled))
      .catch((err: unknown) => this.o.logger.warn({ err, hash }, 'blob cache: fill not kept'))
      .finally(release);
    if (Buffer.isBuffer(reader.body)) {
      // Small objects the store read whole: the client gets the Buffer, the fill a copy of it.
      fill.end(reader.body);
      fill.resume();
      return reader;
    }
    const source = reader.body;
    // Either side failing ends both: a client gone stops the download, a store failure cuts the answer.
    source.on('error', (err) => fill.destroy(err));
    fill.on('close', () => {
      if (!source.destroyed) source.destroy();
    });
    source.pipe(fill);
    return { body: fill, size: reader.size };
  }

  /** A checked fill becomes an entry (evicting what no longer fits). */
  private async adopt(filled: FilledEntry | null): Promise<void> {
    if (!filled) return;
    const entry: CacheEntry = { hash: filled.hash, size: filled.size, crc: filled.crc };
    const target = this.files.entryPath(entry);
    try {
      await renameInto(filled.path, target, () => this.files.prepare(entry.hash));
    } catch (err) {
      this.o.logger.warn({ err, dir: this.o.dir }, 'blob cache: cannot keep a checked fill');
      this.metrics?.fillsAbandoned.inc({ reason: 'disk' });
      await rm(filled.path, { force: true }).catch(() => {});
      return;
    }
    this.metrics?.fills.inc();
    for (const old of this.index.add(entry)) {
      this.metrics?.evictions.inc();
      await rm(this.files.entryPath(old), { force: true }).catch((err: unknown) => {
        this.o.logger.warn({ err, hash: old.hash }, 'blob cache: cannot remove an evicted entry');
      });
    }
    this.updateGauges();
  }

  private async dropKey(key: string): Promise<void> {
    const hash = hashOfKey(key, this.o.keyDepth);
    if (hash !== null) await this.drop(hash);
  }

  private async drop(hash: string): Promise<void> {
    const entry = this.index.remove(hash);
    if (!entry) return;
    this.updateGauges();
    await rm(this.files.entryPath(entry), { force: true }).catch((err: unknown) => {
      this.o.logger.warn({ err, hash }, 'blob cache: cannot remove an entry');
    });
  }

  private updateGauges(): void {
    this.metrics?.bytes.set(this.index.bytes);
    this.metrics?.entries.set(this.index.count);
  }
}

/** A small entry, read and checked on the event loop; null if gone or damaged. */
function readSmall(path: string, entry: CacheEntry): BlobReader | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    if (fstatSync(fd).size !== entry.size) return null;
    const body = Buffer.allocUnsafe(entry.size);
    let done = 0;
    while (done < entry.size) {
      const n = readSync(fd, body, done, entry.size - done, done);
      if (n === 0) return null;
      done += n;
    }
    return crc32(body) >>> 0 === entry.crc ? { body, size: entry.size } : null;
  } finally {
    closeSync(fd);
  }
}

/**
 * A larger entry: read whole (up to WHOLE_HIT) or read through once to check
 * it and then streamed from the same descriptor, so that a damaged entry is
 * found before the first byte is sent. Null if gone or damaged.
 */
async function readChecked(path: string, entry: CacheEntry): Promise<BlobReader | null> {
  let file: FileHandle;
  try {
    file = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let owned = true;
  try {
    if ((await file.stat()).size !== entry.size) return null;
    const whole = entry.size <= WHOLE_HIT;
    const buffer = Buffer.allocUnsafe(whole ? entry.size : HIT_CHUNK);
    let crc = 0;
    let done = 0;
    while (done < entry.size) {
      const want = whole ? entry.size - done : Math.min(HIT_CHUNK, entry.size - done);
      const { bytesRead } = await file.read(buffer, whole ? done : 0, want, done);
      if (bytesRead === 0) return null;
      crc = crc32(
        whole ? buffer.subarray(done, done + bytesRead) : buffer.subarray(0, bytesRead),
        crc,
      );
      done += bytesRead;
    }
    if (crc >>> 0 !== entry.crc) return null;
    if (whole) return { body: buffer, size: entry.size };
    owned = false;
    const body = file.createReadStream({ start: 0, end: entry.size - 1, highWaterMark: HIT_CHUNK });
    return { body, size: entry.size };
  } finally {
    if (owned) await file.close().catch(() => {});
  }
}

/** Opens a new fill file, creating the cache's folders first if they are missing (deleted under us). */
async function openFill(path: string, prepare: () => Promise<void>): Promise<FileHandle> {
  try {
    return await open(path, 'wx');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await prepare();
    return open(path, 'wx');
  }
}

async function renameInto(from: string, to: string, prepare: () => Promise<void>): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await prepare();
    await rename(from, to);
  }
}

/** Waits for `promise`, `ms` at most, or until `signal` aborts; never throws. */
function waitAtMost(promise: Promise<void>, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
    void promise.then(done);
  });
}
