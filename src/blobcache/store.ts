import {
  closeSync,
  createReadStream,
  fstatSync,
  openSync,
  read,
  readSync,
  renameSync,
  type Stats,
  statSync,
  write,
} from 'node:fs';
import { type FileHandle, open, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { finished, type Readable, type Transform } from 'node:stream';
import { promisify } from 'node:util';
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
import { BufferBudget } from '../runtime/buffer-budget.js';
import { CacheFiles } from './files.js';
import { CacheFill, type FilledEntry, WholeFill } from './fill.js';
import { type CacheEntry, CacheIndex } from './index.js';
import { type CacheMetrics, cacheMetrics } from './metrics.js';
import { checkBytes, checkFile } from './verify.js';

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
/**
 * Objects up to this size are filled whole (WholeFill): held in memory on
 * their way to the client, then checked in one synchronous inflate while one
 * write puts them in their fill file. Larger ones stream through CacheFill.
 */
const WHOLE_FILL = 2 * 1024 * 1024;
/**
 * A whole fill up to this size keeps the chunks it passed on; a larger one
 * copies them into a reused buffer (WHOLE_FILL_BUFFERS): the chunks would
 * have to be joined into a fresh megabyte-sized buffer, which costs its page
 * faults every time (docs/benchmarks.md, notes of 2026-12-02).
 */
const SMALL_FILL = 64 * 1024;
/**
 * Buffers for whole fills over SMALL_FILL, each WHOLE_FILL bytes: at most
 * this many at once. A fill that finds none free streams through CacheFill,
 * so the memory stays bounded however many misses come. A buffer is held
 * from the first byte until its file is written, after the client has its
 * answer, so four clients keep more than four busy: with four, a CPU
 * profile of the bench's first pass (c=4) still showed streamed fills.
 */
const WHOLE_FILL_BUFFERS = 8;
/** Of those, how many are kept for reuse when free (the memory an idle cache keeps). */
const WHOLE_FILL_KEPT = 4;
/** Entries up to this size are read whole and sent from one Buffer; larger ones are streamed. */
const WHOLE_HIT = 1024 * 1024;
/** Read size of a streamed entry. */
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
 * - A hit sends the entry's file as it is when that file is provably the one
 *   whose bytes were checked (same inode, size and change time: see
 *   stampOf()), which every entry filled by this process is. Any other (found
 *   at start-up, or written to since) is checked against its content hash
 *   before its first byte is sent. An entry that is gone or damaged is
 *   dropped and read from the store, so the folder may be deleted or damaged
 *   at any moment.
 * - Entries are per instance and survive restarts: the index is rebuilt from
 *   the folder listing (names and sizes, no file read).
 * - Deletes and replacements of an object drop its entry, and void a fill
 *   of it in progress, so what a GET sends stays byte-identical to the
 *   store's object.
 *
 * Keys that do not follow the blob layout pass through uncached.
 */
export class CachingBlobStore implements BlobStore {
  private readonly index: CacheIndex;
  private readonly files: CacheFiles;
  private readonly metrics: CacheMetrics | null;
  /** The same bound-and-reuse as upload bodies read whole (see BufferBudget). */
  private readonly fillBuffers: BufferBudget;
  /**
   * Misses in progress by hash, from the object store request to the end of
   * the fill; resolve (never reject) when it has ended either way.
   */
  private readonly filling = new Map<string, Promise<void>>();
  /**
   * Misses in progress whose object was deleted or replaced meanwhile: their
   * bytes may be the old object's (S3 keeps sending a body it has started),
   * so they must not become an entry. Cleared when the fill ends.
   */
  private readonly voided = new Set<string>();
  /**
   * Entry files being removed (evicted or dropped), by hash. A new fill of
   * the same blob is renamed into place only after its removal is done, so
   * the removal cannot take the new file instead of the old one.
   */
  private readonly removing = new Map<string, Promise<void>>();

  private constructor(
    readonly inner: BlobStore,
    private readonly o: BlobCacheOptions,
  ) {
    // An entry larger than a quarter of the bound would push out too much of the hot set at once.
    this.index = new CacheIndex(o.maxBytes, Math.min(o.maxEntryBytes, Math.floor(o.maxBytes / 4)));
    this.files = new CacheFiles(o.dir);
    this.metrics = o.registry ? cacheMetrics(o.registry) : null;
    const memory = this.metrics?.fillMemory;
    this.fillBuffers = new BufferBudget(
      WHOLE_FILL * WHOLE_FILL_BUFFERS,
      WHOLE_FILL,
      WHOLE_FILL_KEPT,
      (held) => memory?.set(held),
    );
  }

  /** The cache over `inner`, its index rebuilt from what `dir` holds. */
  static async open(inner: BlobStore, o: BlobCacheOptions): Promise<CachingBlobStore> {
    const cache = new CachingBlobStore(inner, o);
    const { entries, removed, unremovable } = await cache.files.scan();
    // The bounds may have been lowered since these entries were kept.
    const removals: Promise<void>[] = [];
    for (const entry of entries) {
      if (entry.size > cache.index.maxEntryBytes) {
        removals.push(cache.removeFile(entry.hash));
        continue;
      }
      for (const old of cache.index.add(entry)) removals.push(cache.removeFile(old.hash));
    }
    await Promise.all(removals);
    cache.updateGauges();
    o.logger.info(
      {
        dir: o.dir,
        entries: cache.index.count,
        bytes: cache.index.bytes,
        evicted: removals.length,
        removed,
      },
      'blob cache opened',
    );
    if (unremovable > 0) {
      o.logger.warn(
        { dir: o.dir, unremovable },
        'blob cache: files that are not entries could not be removed; they are ignored',
      );
    }
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
        this.voided.delete(hash);
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
    try {
      return await this.inner.put(key, body, {
        ...options,
        beforeCommit: async () => {
          const mode = await beforeCommit();
          replacing = mode === 'replace';
          return mode;
        },
      });
    } finally {
      // The object was replaced (restored after damage), or may have been if
      // the put failed after that was decided: its bytes may differ from the entry's.
      if (replacing) await this.drop(hash, { objectChanged: true });
    }
  }

  stat(key: string, options?: { signal?: AbortSignal }): Promise<BlobInfo | null> {
    return this.inner.stat(key, options);
  }

  // The entries go whether or not the store's delete succeeded: a batch that
  // fails part-way may have deleted some of its objects, and the cleaner will
  // not ask again for rows it has already removed. An entry dropped for an
  // object that is still there only costs a miss.
  async delete(key: string): Promise<void> {
    try {
      await this.inner.delete(key);
    } finally {
      await this.dropKey(key);
    }
  }

  async deleteMany(keys: string[]): Promise<void> {
    try {
      await this.inner.deleteMany(keys);
    } finally {
      for (const key of keys) await this.dropKey(key);
    }
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

  /** Bytes and entries the index holds now (what the gauges show). */
  get usage(): { bytes: number; entries: number } {
    return { bytes: this.index.bytes, entries: this.index.count };
  }

  /** The entry's bytes, checked; null when there is no entry or it turned out gone or damaged. */
  private async hit(hash: string): Promise<BlobReader | null> {
    const entry = this.index.use(hash);
    if (!entry) return null;
    const path = this.files.entryPath(hash);
    let reader: BlobReader | null;
    try {
      const stamped =
        entry.size <= SYNC_HIT ? readSmall(path, entry) : await readStamped(path, entry);
      reader = stamped === 'unread' ? await readChecked(path, entry) : stamped;
    } catch (err) {
      this.o.logger.warn(
        { err, hash, path },
        'blob cache entry unreadable; reading the object store',
      );
      reader = null;
    }
    if (!reader) {
      this.metrics?.damaged.inc();
      // Unless it was filled again meanwhile: the new entry is another file.
      if (this.index.peek(hash) === entry) await this.drop(hash);
      return null;
    }
    this.metrics?.hits.inc();
    this.metrics?.hitBytes.inc(entry.size);
    return reader;
  }

  /** Sends the store's bytes to the client through a fill, which becomes an entry if they check out. */
  private async fill(hash: string, reader: BlobReader, release: () => void): Promise<BlobReader> {
    const kept = (done: Promise<unknown>) =>
      void done
        .catch((err: unknown) => this.o.logger.warn({ err, hash }, 'blob cache: fill failed'))
        .finally(release);
    if (reader.size <= WHOLE_FILL) {
      if (Buffer.isBuffer(reader.body)) {
        // Objects the store read whole: the client gets the Buffer, the fill the same bytes.
        this.metrics?.fillReads.inc({ read: 'whole' });
        kept(this.keepWhole(hash, reader.body));
        return reader;
      }
      const held = reader.size > SMALL_FILL ? this.fillBuffers.tryTake(reader.size) : null;
      if (reader.size <= SMALL_FILL || held) {
        this.metrics?.fillReads.inc({ read: 'whole' });
        const whole = new WholeFill(reader.size, held?.buffer);
        kept(
          whole.done
            .then((result) =>
              'bytes' in result
                ? this.keepWhole(hash, result.bytes)
                : this.abandoned(hash, result.reason),
            )
            // Only once its file is written: the write reads from the buffer.
            .finally(() => held?.release()),
        );
        return { body: relay(reader.body, whole), size: reader.size };
      }
    }
    this.metrics?.fillReads.inc({ read: 'streamed' });
    let file: FileHandle;
    const path = this.files.fillPath(hash);
    try {
      file = await inFolders(
        () => open(path, 'wx'),
        () => this.files.prepare(hash),
      );
    } catch (err) {
      release();
      this.o.logger.warn({ err, dir: this.o.dir }, 'blob cache: cannot create a fill file');
      this.metrics?.fillsAbandoned.inc({ reason: 'disk' });
      return reader;
    }
    const fill = new CacheFill(hash, reader.size, path, file, (reason) =>
      this.abandoned(hash, reason),
    );
    kept(fill.done.then((filled) => this.adopt(filled)));
    if (Buffer.isBuffer(reader.body)) {
      // Objects the store read whole: the client gets the Buffer, the fill the same bytes.
      fill.end(reader.body);
      fill.resume();
      return reader;
    }
    return { body: relay(reader.body, fill), size: reader.size };
  }

  /**
   * Checks a whole object's bytes and keeps them as an entry. The fill file is
   * written on the thread pool while the bytes are inflated and hashed here,
   * so the two overlap; only bytes that checked out and were written whole
   * become an entry.
   */
  private async keepWhole(hash: string, bytes: Buffer): Promise<void> {
    const path = this.files.fillPath(hash);
    const writing = inFolders(
      () =>
        bytes.length > SMALL_FILL ? writeFill(path, bytes) : writeFile(path, bytes, { flag: 'wx' }),
      () => this.files.prepare(hash),
    ).then(
      () => null,
      (err: Error) => err,
    );
    let wrong: string | null;
    try {
      wrong = await checkBytes(bytes, hash);
    } catch (err) {
      // The caller reuses `bytes` once this returns: not before the write is done.
      await writing;
      await rm(path, { force: true }).catch(() => {});
      throw err;
    }
    const failed = await writing;
    if (failed || wrong !== null) {
      this.abandoned(hash, failed ? `writing the cache file: ${failed.message}` : (wrong ?? ''));
      await rm(path, { force: true }).catch(() => {});
      return;
    }
    await this.adopt({ hash, size: bytes.length, path });
  }

  /**
   * Counts and logs a fill given up: client or store gone, bytes wrong, disk
   * failing (told apart by the reason fill.ts gives), or its object deleted or
   * replaced meanwhile (`kind` 'dropped').
   */
  private abandoned(hash: string, reason: string, kind: AbandonKind = kindOf(reason)): void {
    this.metrics?.fillsAbandoned.inc({ reason: kind });
    // Clients going away and objects deleted are everyday events; the others are worth a look.
    if (kind === 'cut_off' || kind === 'dropped')
      this.o.logger.debug({ hash, reason }, 'blob cache fill not kept');
    else this.o.logger.warn({ hash, reason }, 'blob cache fill abandoned');
  }

  /**
   * A checked fill becomes an entry (evicting what no longer fits), unless
   * its object was deleted or replaced meanwhile.
   */
  private async adopt(filled: FilledEntry | null): Promise<void> {
    if (!filled) return;
    const entry: CacheEntry = { hash: filled.hash, size: filled.size };
    const target = this.files.entryPath(entry.hash);
    // An old entry of this blob still being removed: renamed into place before that, the new file would go.
    await this.removing.get(entry.hash);
    // Before the rename too: a fill voided by then never reaches entries/.
    if (this.voided.has(entry.hash)) return this.discardVoided(entry.hash, filled.path);
    // A fill over SMALL_FILL is renamed and stated on the event loop, a
    // smaller one on the thread pool (see writeFill()).
    const onLoop = filled.size > SMALL_FILL;
    try {
      await inFolders(
        async () => (onLoop ? renameSync(filled.path, target) : await rename(filled.path, target)),
        () => this.files.prepare(entry.hash),
      );
    } catch (err) {
      this.o.logger.warn({ err, dir: this.o.dir }, 'blob cache: cannot keep a checked fill');
      this.metrics?.fillsAbandoned.inc({ reason: 'disk' });
      await rm(filled.path, { force: true }).catch(() => {});
      return;
    }
    // Its bytes are the ones just checked while filling: stamped, a hit need not check them again.
    const info = onLoop ? statIfThere(target) : await stat(target).catch(() => null);
    if (info) entry.stamp = stampOf(info);
    // Again with no await between this and index.add(), so that no drop() can come in between.
    if (this.voided.has(entry.hash)) return this.discardVoided(entry.hash, target);
    this.metrics?.fills.inc();
    const evicted = this.index.add(entry);
    this.updateGauges();
    if (evicted.length > 0) {
      this.metrics?.evictions.inc(evicted.length);
      // All registered at once, before anything else can fill one of them again.
      await Promise.all(evicted.map((old) => this.removeFile(old.hash)));
    }
  }

  /** Removes the file at `path` of a voided fill of `hash` (see `voided`), and counts it. */
  private async discardVoided(hash: string, path: string): Promise<void> {
    await rm(path, { force: true }).catch(() => {});
    // Counted once the file is gone: who sees the count sees no file.
    this.abandoned(hash, 'the object was deleted or replaced while filling', 'dropped');
  }

  /** The object under `key` was deleted: its entry, and any fill of it in progress, go. */
  private async dropKey(key: string): Promise<void> {
    const hash = hashOfKey(key, this.o.keyDepth);
    if (hash !== null) await this.drop(hash, { objectChanged: true });
  }

  /**
   * Removes the entry of `hash`. With `objectChanged` (deleted or replaced in
   * the store, not just a damaged entry), a fill of it in progress is voided
   * too: its bytes are the old object's.
   */
  private async drop(hash: string, { objectChanged = false } = {}): Promise<void> {
    if (objectChanged && this.filling.has(hash)) this.voided.add(hash);
    const entry = this.index.remove(hash);
    if (!entry) return;
    this.updateGauges();
    await this.removeFile(hash);
  }

  /**
   * Removes the file of an entry that has just left the index; see
   * `removing`. Never fails: a file that cannot be removed is only logged
   * (it is no entry any more, and the next start-up finds it again).
   */
  private removeFile(hash: string): Promise<void> {
    const path = this.files.entryPath(hash);
    const done: Promise<void> = (this.removing.get(hash) ?? Promise.resolve())
      .then(() => unlink(path))
      .catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT')
          this.o.logger.warn({ err, hash }, 'blob cache: cannot remove an entry');
      })
      .finally(() => {
        if (this.removing.get(hash) === done) this.removing.delete(hash);
      });
    this.removing.set(hash, done);
    return done;
  }

  private updateGauges(): void {
    this.metrics?.bytes.set(this.index.bytes);
    this.metrics?.entries.set(this.index.count);
  }
}

type FileFacts = Pick<Stats, 'ino' | 'size' | 'ctimeMs'>;

/** Why a fill was given up: the `reason` label of s3dedup_cache_fills_abandoned_total. */
type AbandonKind = 'cut_off' | 'disk' | 'invalid' | 'dropped';

/** The kind of a fill given up, from the reason fill.ts and keepWhole() give. */
function kindOf(reason: string): AbandonKind {
  if (reason.startsWith('cut off')) return 'cut_off';
  if (reason.startsWith('writing')) return 'disk';
  return 'invalid';
}

/**
 * Which file an entry's bytes were checked in: inode, size and change time.
 * Any write to the file, a truncation or a replacement changes it (ctime
 * cannot be set back from user space), so while it holds the bytes are the
 * checked ones and a hit need not hash them again.
 */
function stampOf(info: FileFacts): string {
  // ctimeMs keeps the nanoseconds to a fraction of a microsecond (a double of
  // about 1.8e12 ms); the bigint form costs a dozen BigInts per hit.
  return `${info.ino}:${info.size}:${info.ctimeMs}`;
}

/** Whether the entry's file is provably the one whose bytes were checked (see stampOf()). */
function isStamped(entry: CacheEntry, info: FileFacts) {
  return entry.stamp === stampOf(info);
}

/**
 * A small entry already checked in this process, read on the event loop;
 * null if gone, 'unread' if it has to be checked first (readChecked()).
 */
function readSmall(path: string, entry: CacheEntry): BlobReader | null | 'unread' {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  try {
    const info = fstatSync(fd);
    if (!isStamped(entry, info)) return 'unread';
    const body = Buffer.allocUnsafe(entry.size);
    let done = 0;
    while (done < entry.size) {
      const n = readSync(fd, body, done, entry.size - done, done);
      if (n === 0) return null;
      done += n;
    }
    return { body, size: entry.size };
  } finally {
    closeSync(fd);
  }
}

/**
 * A larger entry already checked in this process: opened and stated on the
 * event loop, as the filesystem store opens its blobs (a few microseconds
 * from the page cache), and its bytes read on the thread pool: whole up to
 * WHOLE_HIT in one hand-off, else streamed. Through FileHandle the same hit
 * took four hand-offs (open, stat, read, close). Null if gone, 'unread' if
 * it has to be checked first (readChecked()).
 */
async function readStamped(path: string, entry: CacheEntry): Promise<BlobReader | null | 'unread'> {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  // Whether closing `fd` is still ours to do: a stream closes it once it has it.
  let owned = true;
  try {
    if (!isStamped(entry, fstatSync(fd))) return 'unread';
    if (entry.size <= WHOLE_HIT) {
      const body = Buffer.allocUnsafe(entry.size);
      let done = 0;
      while (done < entry.size) {
        const { bytesRead } = await readAt(fd, body, done, entry.size - done, done);
        if (bytesRead === 0) return null;
        done += bytesRead;
      }
      return { body, size: entry.size };
    }
    owned = false;
    const body = createReadStream(path, {
      fd,
      start: 0,
      end: entry.size - 1,
      highWaterMark: HIT_CHUNK,
    });
    return { body, size: entry.size };
  } finally {
    if (owned) closeSync(fd);
  }
}

/**
 * An entry read whole (up to WHOLE_HIT) or streamed. One whose file is not
 * provably the one already checked (found at start-up, or changed since) is
 * checked against its content hash before its first byte is sent, and
 * stamped: one read whole is checked in the buffer that is sent, one
 * streamed is checked in its file first and then read again to send (a
 * write to the file in between would go out unchecked; nothing in s3dedup
 * writes entry files). Null if gone or damaged.
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
    const info = await file.stat();
    if (info.size !== entry.size) return null;
    if (entry.size <= WHOLE_HIT) {
      const body = Buffer.allocUnsafe(entry.size);
      if ((await readInto(file, body)) !== entry.size) return null;
      // Checked in the very bytes that are sent: a write to the file after
      // the check cannot reach the client. The stamp is the file's as stated
      // before the read, so a write during it makes the next hit check again.
      if (!isStamped(entry, info)) {
        if ((await checkBytes(body, entry.hash)) !== null) return null;
        entry.stamp = stampOf(info);
      }
      return { body, size: entry.size };
    }
    if (!isStamped(entry, info)) {
      if ((await checkFile(file, entry.size, entry.hash)) !== null) return null;
      entry.stamp = stampOf(info);
    }
    owned = false;
    const body = file.createReadStream({ start: 0, end: entry.size - 1, highWaterMark: HIT_CHUNK });
    return { body, size: entry.size };
  } finally {
    if (owned) await file.close().catch(() => {});
  }
}

/** Reads from the start of `file` into all of `buffer`; answers the bytes read (fewer at its end). */
async function readInto(file: FileHandle, buffer: Buffer): Promise<number> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesRead } = await file.read(buffer, done, buffer.length - done, done);
    if (bytesRead === 0) break;
    done += bytesRead;
  }
  return done;
}

/**
 * The store's stream through `fill` to the client. Either side failing ends
 * both: a client gone stops the download, a store failure cuts the answer.
 */
function relay(source: Readable, fill: Transform): Transform {
  // finished(), not an 'error' listener: the store's answer may have been
  // destroyed already, while the fill's file was being opened. An HTTP
  // response destroyed with no 'error' listener drops its error, and pipe()
  // from a destroyed stream never ends what it feeds, so the client would
  // wait for the rest of an answer that never comes.
  finished(source, (err) => {
    if (err) fill.destroy(err);
  });
  fill.on('close', () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(fill);
  return fill;
}

const writeAt = promisify(write);
const readAt = promisify(read);

/**
 * Writes a whole fill of more than SMALL_FILL bytes into a new file at
 * `path`. Only the write, which may wait for the disk, goes to the thread
 * pool; opening and closing here, and renaming and stating in adopt(), run on
 * the event loop: they cost the same whatever the size (here 0.1-0.3 ms of
 * the loop per fill, more if a journalled file system makes them wait).
 *
 * In the built code, the same pass of 200 x 1 MiB first reads at c=4 in
 * three alternating rounds: through node:fs/promises (writeFile(), rename(),
 * stat(): six hand-offs per fill) V8 ran 18-23 full collections during the
 * pass, this way 6-7, and the server used 3.6-4.4 ms less CPU per MB
 * (docs/benchmarks.md, sixth session). Smaller fills keep the thread pool:
 * for them, creating the file on the loop was most of what a fill cost it
 * (docs/benchmarks.md, third session).
 */
async function writeFill(path: string, bytes: Buffer): Promise<void> {
  const fd = openSync(path, 'wx');
  try {
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await writeAt(fd, bytes, done, bytes.length - done, done);
      if (bytesWritten === 0) throw new Error(`short write (${done} of ${bytes.length} bytes)`);
      done += bytesWritten;
    }
  } catch (err) {
    try {
      closeSync(fd);
    } catch {
      // The write's failure is the one to report.
    }
    throw err;
  }
  closeSync(fd);
}

/** The file's facts, or null when it is not there (or cannot be stated). */
function statIfThere(path: string): Stats | null {
  try {
    return statSync(path);
  } catch {
    return null;
  }
}

/**
 * Runs `op`, and once more after creating the cache's folders if it failed
 * for want of one (the folder was deleted under us).
 */
async function inFolders<T>(op: () => Promise<T>, prepare: () => Promise<void>): Promise<T> {
  try {
    return await op();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    await prepare();
    return op();
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
