import {
  closeSync,
  constants,
  createReadStream,
  type Dirent,
  fdatasync,
  fstatSync,
  fsync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { access, mkdir, open, readdir, rename, stat, unlink } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { AppError, backendUnavailable } from '../errors.js';
import { crashPoint } from '../runtime/faults.js';
import { removeOrphanedTempFiles, tempName } from '../tempfiles.js';
import type {
  BlobInfo,
  BlobListing,
  BlobReader,
  BlobStore,
  PutOptions,
  PutResult,
} from './port.js';
import { SharedSync } from './shared-sync.js';

/** Folder under the root for files being written; outside the key layout, so the cleaner never sees it. */
const INCOMING = '.incoming';
const READ_CHUNK = 256 * 1024;
/**
 * Reads of a streamed blob: a 1 MiB blob is one read and one socket write.
 * A GET in flight holds about this much in the stream's buffer, plus what
 * the socket has not sent yet.
 */
const STREAM_CHUNK = 1024 * 1024;
/**
 * While a large blob is being written, its data is flushed to the disk every
 * this many bytes, in the background: the fdatasync that makes the PUT
 * durable then finds little left to write, instead of all of it at the end.
 */
const FLUSH_EVERY = 16 * 1024 * 1024;
/**
 * Objects up to this size are read whole, on the event loop (see get()), and
 * returned as a Buffer: a stream over them would cost its setup and a
 * thread-pool trip per read, for a few KiB of data. Uploads of up to this
 * size that arrive as a Buffer are written on the event loop likewise (see
 * put()); only their fsyncs, which wait for the disk, go to the pool.
 */
const WHOLE_READ = 64 * 1024;

// The callback forms on plain descriptors: measured here, a call through a
// FileHandle's promise costs about one and a half times the CPU.
const fdatasyncFd = promisify(fdatasync);
const fsyncFd = promisify(fsync);

const SAFE_KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;

/**
 * Blobs as files under a root folder (STORAGE_TYPE=filesystem). Writes go to
 * a temporary file in the same file system, are made durable (fdatasync), and then hard-linked
 * to the final name: link() fails if the name exists, which gives atomic
 * create-if-absent, so a crash never leaves a partial file under a key and a
 * key's bytes never change.
 */
export class FilesystemBlobStore implements BlobStore {
  private readonly incoming: string;
  /** Shard directories made durable, or being made so (see ensureDir()). */
  private readonly knownDirs = new Map<string, Promise<void>>();
  /** Directories whose entry in their parent is on disk. */
  private readonly durable = new Set<string>();

  /** Directory fsyncs, shared by the PUTs that need one at the same moment. */
  private readonly dirSyncs: SharedSync;

  private constructor(
    private readonly root: string,
    /** fsync of a directory; tests pass one that also records the calls. */
    syncDir: (dir: string) => Promise<void>,
    /** fdatasync of a file being written (its descriptor); tests pass one that fails. */
    private readonly syncFile: (fd: number) => Promise<void>,
  ) {
    this.incoming = join(root, INCOMING);
    this.dirSyncs = new SharedSync(syncDir);
  }

  static async open(
    root: string,
    options: {
      syncDir?: (dir: string) => Promise<void>;
      syncFile?: (fd: number) => Promise<void>;
    } = {},
  ): Promise<FilesystemBlobStore> {
    // Absolute, so that climbing from a shard directory stops at the root (ensureDir()).
    const store = new FilesystemBlobStore(
      resolve(root),
      options.syncDir ?? syncDir,
      options.syncFile ?? fdatasyncFd,
    );
    await mkdir(store.incoming, { recursive: true });
    // Partial writes of a process that crashed mid-upload.
    await removeOrphanedTempFiles(store.incoming, 'incoming');
    return store;
  }

  private pathOf(key: string): string {
    if (
      !SAFE_KEY.test(key) ||
      key.split('/').some((s) => s === '.' || s === '..') ||
      key.startsWith(INCOMING)
    ) {
      throw new Error(`unsafe blob key: ${key}`);
    }
    return join(this.root, ...key.split('/'));
  }

  async put(key: string, body: Readable | Buffer, options: PutOptions = {}): Promise<PutResult> {
    const final = this.pathOf(key);
    const temp = join(this.incoming, tempName('incoming'));
    // A small upload's file calls run on the event loop, as a small GET's do
    // (see get()): they touch the page cache and the directory cache, and
    // each hand-off to the thread pool would cost more than the call. Only
    // the fsyncs wait for the disk, and they still go to the pool.
    const small = Buffer.isBuffer(body) && body.length <= WHOLE_READ ? body : null;
    try {
      const size = small
        ? await writeSmall(temp, small, this.syncFile, options.signal)
        : await writeDurably(temp, body, this.syncFile, options.signal);
      const mode = await options.beforeCommit?.();
      crashPoint('fs.temp-written');
      await this.ensureDir(dirname(final));
      if (mode === 'replace') {
        // rename() replaces atomically: a reader sees the old file or the new one.
        await rename(temp, final);
      } else {
        try {
          // Only a directory entry: no data moves, whatever the blob's size.
          linkSync(temp, final);
        } catch (err) {
          if (code(err) !== 'EEXIST') throw err;
          const existing = await stat(final);
          // The entry may be one whose directory fsync never happened (its PUT
          // failed there, or its process crashed): the answer relies on it, so
          // make it durable too. Shared with other PUTs, this costs little.
          await this.dirSyncs.request(dirname(final));
          return { created: false, size: existing.size };
        }
      }
      crashPoint('fs.linked');
      // The new directory entry must survive a crash too, or an acknowledged PUT could lose its blob.
      await this.dirSyncs.request(dirname(final));
      return { created: true, size };
    } catch (err) {
      throw mapError(err, `writing ${key}`);
    } finally {
      // A large temporary file left by a failed upload may take a while to
      // free, so only a small one is removed on the event loop.
      if (small) {
        try {
          unlinkSync(temp);
        } catch {
          // Already gone (renamed into place) or never made.
        }
      } else await unlink(temp).catch(() => {});
    }
  }

  async get(key: string): Promise<BlobReader | null> {
    const path = this.pathOf(key);
    // Small blobs are read on the event loop, as nginx (without `aio`) and
    // the original Filetracker do: open, fstat, one read and close cost a few
    // microseconds from the page cache, while the same four calls through
    // libuv's thread pool cost four hand-offs and promise turns, about a
    // third of the main thread's time in a profile of 1 KiB GETs
    // (docs/benchmarks.md). A read that must go to the disk blocks the loop
    // for that one read of at most WHOLE_READ bytes; larger blobs are
    // streamed from the pool.
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (err) {
      if (code(err) === 'ENOENT') return null;
      throw mapError(err, `reading ${key}`);
    }
    // Whether closing `fd` is still ours to do: never twice, since the
    // number may already belong to another file opened by then.
    let owned = true;
    try {
      const info = fstatSync(fd);
      if (!info.isFile()) throw backendUnavailable('storage', `${key} is not a regular file`);
      if (info.size <= WHOLE_READ) {
        const body = readWhole(fd, info.size);
        owned = false;
        closeSync(fd);
        return { body, size: info.size };
      }
      // The stream owns the descriptor from here: it closes it at the end or on destroy().
      // With `end` it stops at the known size, without one more read to find the end.
      owned = false;
      const body = createReadStream(path, {
        fd,
        start: 0,
        end: info.size - 1,
        highWaterMark: Math.min(info.size, STREAM_CHUNK),
      });
      return { body, size: info.size };
    } catch (err) {
      if (owned) {
        try {
          closeSync(fd);
        } catch {
          // The error that matters is the one being thrown.
        }
      }
      throw mapError(err, `reading ${key}`);
    }
  }

  async stat(key: string): Promise<BlobInfo | null> {
    try {
      const s = await stat(this.pathOf(key));
      return { size: s.size, lastModified: s.mtime };
    } catch (err) {
      if (code(err) === 'ENOENT') return null;
      throw mapError(err, `inspecting ${key}`);
    }
  }

  async delete(key: string): Promise<void> {
    try {
      await unlink(this.pathOf(key));
    } catch (err) {
      if (code(err) !== 'ENOENT') throw mapError(err, `deleting ${key}`);
    }
  }

  async deleteMany(keys: string[]): Promise<void> {
    for (const key of keys) await this.delete(key);
  }

  async *list(options: { prefix?: string } = {}): AsyncIterable<BlobListing> {
    const prefix = options.prefix ?? '';
    // Depth-first, one directory's names at a time, sorted: a key is its
    // directories' names joined by "/", so sorting each directory by name
    // (with "/" after a directory's) gives keys in bytewise order, as S3
    // lists them. Memory holds one directory per level: a shard directory
    // holds a few hundred names at most.
    async function* walk(dir: string, rel: string): AsyncGenerator<BlobListing> {
      let entries: Dirent[];
      try {
        entries = await readdir(dir, { withFileTypes: true });
      } catch (err) {
        if (code(err) === 'ENOENT') return;
        throw err;
      }
      const sortKey = (e: Dirent) => Buffer.from(e.isDirectory() ? `${e.name}/` : e.name);
      entries.sort((a, b) => Buffer.compare(sortKey(a), sortKey(b)));
      for (const entry of entries) {
        if (rel === '' && entry.name === INCOMING) continue;
        const key = rel === '' ? entry.name : `${rel}/${entry.name}`;
        if (!key.startsWith(prefix) && !prefix.startsWith(`${key}/`)) continue;
        const full = join(dir, entry.name);
        if (entry.isDirectory()) yield* walk(full, key);
        else if (entry.isFile()) {
          const s = await stat(full).catch(() => null);
          if (s) yield { key, size: s.size, lastModified: s.mtime };
        }
      }
    }
    try {
      yield* walk(this.root, '');
    } catch (err) {
      throw mapError(err, 'listing blobs');
    }
  }

  async removeStaleUploads(olderThan: Date): Promise<number> {
    // Partial files have no key yet: their age alone tells (a live upload keeps writing).
    let removed = 0;
    try {
      for (const name of await readdir(this.incoming)) {
        const path = join(this.incoming, name);
        const info = await stat(path).catch(() => null);
        if (info && info.mtime < olderThan) {
          await unlink(path).then(
            () => removed++,
            () => {},
          );
        }
      }
    } catch (err) {
      throw mapError(err, 'removing partial uploads');
    }
    return removed;
  }

  async check(): Promise<void> {
    try {
      await access(this.incoming, constants.W_OK);
    } catch (err) {
      throw mapError(err, 'checking the blob folder');
    }
  }

  async close(): Promise<void> {}

  /**
   * Makes the shard directories of a key, durably. A directory is an entry
   * in its parent that must be on disk before the blob's own entry counts
   * (a power loss could otherwise drop `ab/` and, with it, a blob whose PUT
   * was answered). So the first time this process sees a directory, made now
   * or left by an earlier (perhaps crashed) one, its parents are fsynced up
   * to the root; PUTs into it meanwhile wait for that.
   */
  private ensureDir(dir: string): Promise<void> {
    let ready = this.knownDirs.get(dir);
    if (!ready) {
      ready = (async () => {
        // Directory entries only, as link() above: on the event loop.
        mkdirSync(dir, { recursive: true });
        for (
          let entry = dir;
          entry !== this.root && !this.durable.has(entry);
          entry = dirname(entry)
        ) {
          await this.dirSyncs.request(dirname(entry));
          this.durable.add(entry);
        }
      })();
      ready.catch(() => this.knownDirs.delete(dir));
      this.knownDirs.set(dir, ready);
    }
    return ready;
  }
}

/**
 * Copies `body` into a new file and makes it durable; returns the byte count.
 * fdatasync is enough: it writes the data and the metadata needed to read it
 * back (size, block map) and skips only the timestamps, which no reader uses.
 */
async function writeDurably(
  path: string,
  body: Readable | Buffer,
  syncFile: (fd: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<number> {
  const handle = await open(path, 'wx', 0o600);
  let size = 0;
  // Flushes started while writing (see FLUSH_EVERY); one at a time.
  let flushing: Promise<void> | undefined;
  // The first failed flush. It must fail the PUT: Linux reports a writeback
  // error once per open file and marks the pages clean, so the final
  // fdatasync may well succeed with the data lost.
  let flushError: unknown;
  try {
    if (Buffer.isBuffer(body)) {
      // writeFile loops until every byte is written (a single write may be short).
      await handle.writeFile(body, signal ? { signal } : {});
      await syncFile(handle.fd);
      return body.length;
    }
    let unflushed = 0;
    const sink = new Writable({
      highWaterMark: READ_CHUNK,
      writev(chunks, callback) {
        const buffers = chunks.map((c) => c.chunk as Buffer);
        handle.writev(buffers).then((r) => {
          size += r.bytesWritten;
          unflushed += r.bytesWritten;
          if (unflushed >= FLUSH_EVERY && !flushing) {
            unflushed = 0;
            flushing = syncFile(handle.fd)
              .catch((err: unknown) => {
                flushError ??= err;
              })
              .finally(() => {
                flushing = undefined;
              });
          }
          callback();
        }, callback);
      },
    });
    await pipeline(body, sink, signal ? { signal } : {});
    await flushing;
    await syncFile(handle.fd);
    if (flushError !== undefined) throw flushError;
    return size;
  } finally {
    // A failed upload waits for its flush to end before closing (it cannot reject).
    await flushing;
    await handle.close();
  }
}

/** writeDurably() for a small Buffer: everything but the fdatasync on the event loop. */
async function writeSmall(
  path: string,
  body: Buffer,
  syncFile: (fd: number) => Promise<void>,
  signal?: AbortSignal,
): Promise<number> {
  signal?.throwIfAborted();
  const fd = openSync(path, 'wx', 0o600);
  try {
    // A single write may be short: loop until every byte is in.
    for (let done = 0; done < body.length; ) {
      done += writeSync(fd, body, done, body.length - done, done);
    }
    await syncFile(fd);
    return body.length;
  } finally {
    closeSync(fd);
  }
}

/** The whole file (of `size` bytes) into one buffer. */
function readWhole(fd: number, size: number): Buffer {
  const bytes = Buffer.allocUnsafe(size);
  let done = 0;
  while (done < size) {
    const read = readSync(fd, bytes, done, size - done, done);
    // Blobs never change once created: a short file means someone else touched it.
    if (read === 0) throw backendUnavailable('storage', 'blob file shrank while being read');
    done += read;
  }
  return bytes;
}

/** fsync of a directory: its entries (names of new files and folders) are on disk. */
export async function syncDir(dir: string): Promise<void> {
  // Opening and closing the directory, just written to, find it in memory;
  // only the fsync waits for the disk.
  const fd = openSync(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    closeSync(fd);
  }
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * File-system failures (disk full, I/O error, permissions, read-only) are the
 * store being unavailable: 503, never "absent". Errors raised by the body
 * stream or by beforeCommit (client gone, checksum mismatch) pass through.
 */
function mapError(err: unknown, doing: string): unknown {
  if (err instanceof AppError) return err;
  const c = code(err);
  if (c && /^E[A-Z]+$/.test(c) && !isStreamCode(c)) {
    return backendUnavailable('storage', `${doing}: ${(err as Error).message}`, err);
  }
  return err;
}

function isStreamCode(c: string): boolean {
  // Client-side socket errors surface through the body stream, not the disk.
  return c === 'ECONNRESET' || c === 'EPIPE' || c === 'ECONNABORTED';
}
