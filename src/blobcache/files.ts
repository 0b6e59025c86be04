import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { SHA256_HEX } from '../dedup/keys.js';
import type { CacheEntry } from './index.js';

/**
 * The cache's folder:
 *
 *   entries/ab/<sha256 hex>      a checked blob's stored (gzip) bytes
 *   fills/<sha256 hex>.<random>  fills in progress; renamed into entries/ once checked
 *
 * A restart rebuilds the index from the folder listing and one stat per
 * entry, reading no file; each entry is checked against its name on its
 * first hit after that (see store.ts), so an entry cut short by a crash or
 * damaged on disk is a miss, never a wrong answer.
 */
export class CacheFiles {
  readonly entriesDir: string;
  readonly fillsDir: string;

  constructor(readonly dir: string) {
    this.entriesDir = join(dir, 'entries');
    this.fillsDir = join(dir, 'fills');
  }

  entryPath(hash: string): string {
    return join(this.entriesDir, hash.slice(0, 2), hash);
  }

  fillPath(hash: string): string {
    return join(this.fillsDir, `${hash}.${randomBytes(6).toString('hex')}`);
  }

  /** Creates the folders an entry and a fill need (again, if someone removed them). */
  async prepare(hash?: string): Promise<void> {
    await mkdir(this.fillsDir, { recursive: true });
    if (hash !== undefined)
      await mkdir(join(this.entriesDir, hash.slice(0, 2)), { recursive: true });
    else await mkdir(this.entriesDir, { recursive: true });
  }

  /**
   * The entries on disk, least recently filled first; how many files were
   * not entries (removed), and how many of those could not be removed (left
   * alone: they never become entries). Fills a previous process left are
   * removed. Nothing found here is followed out of the folder: a link is
   * removed as a link, whatever it points at.
   */
  async scan(): Promise<{ entries: CacheEntry[]; removed: number; unremovable: number }> {
    await rm(this.fillsDir, { recursive: true, force: true });
    await this.prepare();
    let removed = 0;
    let unremovable = 0;
    const removeStray = async (path: string, folder: boolean) => {
      try {
        // Only a real folder is removed with what it holds; rm() does not follow links in it.
        await (folder ? rm(path, { recursive: true, force: true }) : unlink(path));
        removed++;
      } catch {
        unremovable++;
      }
    };
    for (const item of await readdir(this.entriesDir, { withFileTypes: true })) {
      if (!item.isDirectory() || !SHARD.test(item.name)) {
        await removeStray(join(this.entriesDir, item.name), item.isDirectory());
      }
    }
    // All 256 shard folders at once, so that a fresh cache's first fills do
    // not each fail to find theirs, make it and try again: in a profile of a
    // first pass over 200 x 1 MiB, making folders was 2.6% of the CPU
    // (docs/benchmarks.md, sixth session). One that cannot be made (a file
    // that could not be removed in its place) only costs its fills later,
    // never the start-up.
    await Promise.all(
      Array.from({ length: 256 }, (_, i) =>
        mkdir(join(this.entriesDir, i.toString(16).padStart(2, '0')), { recursive: true }).catch(
          () => {},
        ),
      ),
    );
    const found: { entry: CacheEntry; mtime: number }[] = [];
    for (const shard of await readdir(this.entriesDir, { withFileTypes: true })) {
      if (!shard.isDirectory() || !SHARD.test(shard.name)) continue;
      const shardDir = join(this.entriesDir, shard.name);
      let names: string[];
      try {
        names = await readdir(shardDir);
      } catch {
        continue;
      }
      // A shard's entries looked at all at once rather than one round trip after another.
      const infos = await Promise.all(
        names.map((name) => lstat(join(shardDir, name)).catch(() => null)),
      );
      for (const [i, name] of names.entries()) {
        const info = infos[i];
        if (!info) continue;
        if (!SHA256_HEX.test(name) || name.slice(0, 2) !== shard.name || !info.isFile()) {
          await removeStray(join(shardDir, name), info.isDirectory());
          continue;
        }
        found.push({ entry: { hash: name, size: info.size }, mtime: info.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    return { entries: found.map((f) => f.entry), removed, unremovable };
  }
}

/** A shard folder's name: the first two hex digits of its entries' hashes. */
const SHARD = /^[0-9a-f]{2}$/;
