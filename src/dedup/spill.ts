import { constants, createReadStream } from 'node:fs';
import { access, type FileHandle, mkdir, open, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { backendUnavailable } from '../errors.js';
import { tempName } from '../tempfiles.js';

const READ_CHUNK = 256 * 1024;
/** Prefix of spill file names (see src/tempfiles.ts). */
export const SPILL_KIND = 'spill';

/**
 * Holds an upload whose hash is not known until its last byte: up to
 * `threshold` bytes in memory, the rest in a temporary file. After `finish`
 * it can be replayed any number of times with `openReader()`. `dispose()`
 * must be called on every path (the dedup service does it in `finally`);
 * it removes the temporary file even if the write was cut off.
 */
export class SpillBuffer extends Writable {
  private chunks: Buffer[] = [];
  private memoryBytes = 0;
  private file: FileHandle | null = null;
  private filePath: string | null = null;
  /** Serializes file operations so dispose() never races an open(). */
  private pending: Promise<unknown> = Promise.resolve();
  private disposed = false;
  size = 0;

  constructor(
    private readonly dir: string,
    private readonly threshold: number,
  ) {
    super({ highWaterMark: READ_CHUNK });
  }

  override _write(
    chunk: Buffer,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    this.size += chunk.length;
    if (this.filePath === null && this.memoryBytes + chunk.length <= this.threshold) {
      this.chunks.push(chunk);
      this.memoryBytes += chunk.length;
      callback();
      return;
    }
    this.run(() => this.writeToFile(chunk)).then(
      () => callback(),
      (err: unknown) => callback(spillFailure(this.dir, err)),
    );
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.run(async () => {
      await this.file?.close();
      this.file = null;
    }).then(
      () => callback(),
      (err: unknown) => callback(spillFailure(this.dir, err)),
    );
  }

  private async writeToFile(chunk: Buffer): Promise<void> {
    if (this.disposed) throw new Error('spill buffer disposed');
    if (this.file === null) {
      await mkdir(this.dir, { recursive: true });
      this.filePath = join(this.dir, tempName(SPILL_KIND));
      this.file = await open(this.filePath, 'wx', 0o600);
      if (this.chunks.length > 0) await this.file.writev(this.chunks);
      this.chunks = [];
      this.memoryBytes = 0;
    }
    await this.file.write(chunk);
  }

  private run<T>(op: () => Promise<T>): Promise<T> {
    const next = this.pending.then(op, op);
    this.pending = next.catch(() => {});
    return next;
  }

  /** True when the content went past the threshold into a temporary file. */
  get spilled(): boolean {
    return this.filePath !== null;
  }

  /** A fresh stream of everything written. Only valid after 'finish'. */
  openReader(): Readable {
    if (!this.writableFinished) throw new Error('spill buffer read before it was finished');
    if (this.filePath !== null)
      return createReadStream(this.filePath, { highWaterMark: READ_CHUNK });
    return Readable.from(this.chunks, { objectMode: false });
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    if (!this.destroyed) this.destroy();
    await this.run(async () => {
      await this.file?.close().catch(() => {});
      this.file = null;
      if (this.filePath !== null) await unlink(this.filePath).catch(() => {});
      this.chunks = [];
    });
  }
}

/**
 * TEMP_DIR failing (gone, a file in its place, full, read-only) is local
 * storage being unavailable: a 503 the operator sees in /health, not a 500.
 */
function spillFailure(dir: string, err: unknown): Error {
  return backendUnavailable(
    'storage',
    `temporary folder TEMP_DIR (${dir}): ${(err as Error).message}`,
    err,
  );
}

/** TEMP_DIR exists (or can be made) and is writable: a cheap probe for /health. */
export async function checkSpillDir(dir: string): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
    await access(dir, constants.W_OK);
  } catch (err) {
    throw spillFailure(dir, err);
  }
}
