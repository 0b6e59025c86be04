import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, type Dir } from 'node:fs';
import { lstat, mkdir, opendir, rename, rm, utimes } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { AppError, backendUnavailable, StartupError } from '../errors.js';
import type { OldFile, OldHead, OldStore, OldUpload } from './source.js';

/**
 * A V1 Filetracker storage folder: `DIR/files/<path>` holds a file's raw
 * content, its modification time (whole seconds) is its version. Listing
 * walks the tree depth-first with one open directory handle per level, so
 * memory stays flat however many files there are (millions), whatever the
 * size of a directory.
 */
export class V1Directory implements OldStore {
  readonly name: string;
  private readonly root: string;

  constructor(dir: string) {
    this.root = join(dir, 'files');
    this.name = `V1 storage folder ${dir}`;
  }

  /** A folder without `files/` is not a V1 store (a wrong --v1-directory): said at once, not migrated as empty. */
  async check(): Promise<void> {
    const info = await lstat(this.root).catch(() => null);
    if (!info?.isDirectory()) {
      throw new StartupError(
        `${this.root} is not a folder: --v1-directory must name a V1 Filetracker storage folder (the one holding files/)`,
      );
    }
  }

  async *list(dir = ''): AsyncIterable<string> {
    const start = dir === '' ? this.root : join(this.root, dir);
    const stack: Array<{ handle: Dir; rel: string }> = [];
    const open = async (path: string, rel: string) => {
      try {
        stack.push({ handle: await opendir(path, { bufferSize: 64 }), rel });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          throw this.failure(`listing ${rel || '/'}`, err);
      }
    };
    await open(start, '');
    try {
      while (stack.length > 0) {
        const top = stack[stack.length - 1] as { handle: Dir; rel: string };
        const entry = await top.handle.read();
        if (entry === null) {
          await top.handle.close();
          stack.pop();
          continue;
        }
        const rel = top.rel === '' ? entry.name : `${top.rel}/${entry.name}`;
        if (entry.isDirectory()) await open(join(top.handle.path, entry.name), rel);
        // Unreadable or odd entries are the copy's to report, one by one.
        else yield rel;
      }
    } finally {
      for (const { handle } of stack) await handle.close().catch(() => {});
    }
  }

  async head(path: string): Promise<OldHead | null> {
    const info = await this.stat(path);
    if (!info) return null;
    return {
      version: info.version,
      encoding: 'identity',
      length: info.size,
      logicalSize: info.size,
    };
  }

  async fetch(path: string): Promise<OldFile | null> {
    const head = await this.head(path);
    if (!head) return null;
    const body = createReadStream(join(this.root, path), { highWaterMark: 256 * 1024 });
    // Open (and so permission) failures surface on the stream: the copy reports them.
    return { ...head, body };
  }

  /**
   * Live migration writes here too, so that the folder stays a full copy to
   * go back to: the raw content, its version as the file time, put in place
   * by a rename (a reader never sees half a file). An older version than
   * the one here changes nothing, as on the server.
   */
  async put(path: string, upload: OldUpload): Promise<void> {
    const target = join(this.root, path);
    const here = await this.stat(path);
    if (here && here.version > upload.version) return;
    const temp = `${target}.s3dedup-${process.pid}-${randomUUID()}`;
    try {
      await mkdir(dirname(target), { recursive: true });
      const body = Buffer.isBuffer(upload.body) ? Readable.from([upload.body]) : upload.body;
      await pipeline(body, createGunzip(), createWriteStream(temp, { flush: true }));
      // As a Date: Node takes a negative number of seconds (before 1970) as "now".
      const time = new Date(upload.version * 1000);
      await utimes(temp, time, time);
      await rename(temp, target);
    } catch (err) {
      await rm(temp, { force: true });
      throw this.failure(`writing ${path}`, err);
    }
  }

  async delete(path: string, version: number): Promise<'done' | 'absent'> {
    const here = await this.stat(path);
    if (!here) return 'absent';
    if (here.version > version) return 'done';
    try {
      await rm(join(this.root, path), { force: true });
    } catch (err) {
      throw this.failure(`deleting ${path}`, err);
    }
    return 'done';
  }

  async close(): Promise<void> {}

  private async stat(path: string): Promise<{ version: number; size: number } | null> {
    try {
      const info = await lstat(join(this.root, path));
      if (info.isDirectory()) return null;
      if (!info.isFile()) {
        const kind = info.isSymbolicLink() ? 'symbolic link' : 'special file';
        throw new AppError('BAD_GATEWAY', `${path} in ${this.name} is a ${kind}, not a file`, {
          backend: 'filetracker',
        });
      }
      return { version: Math.floor(info.mtimeMs / 1000), size: info.size };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return null;
      throw this.failure(`reading ${path}`, err);
    }
  }

  private failure(doing: string, err: unknown): Error {
    return backendUnavailable(
      'filetracker',
      `${this.name}, ${doing}: ${(err as Error).message}`,
      err,
    );
  }
}
