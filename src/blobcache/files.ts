import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { CacheEntry } from './index.js';

/**
 * The cache's folder:
 *
 *   entries/ab/<sha256 hex>-<crc32 hex>   a verified blob's stored (gzip) bytes
 *   fills/<sha256 hex>.<random>           fills in progress; renamed into entries/ once verified
 *
 * The name carries all an entry's facts but its size, so a restart rebuilds
 * the index from the folder listing and one stat per entry, reading no file.
 * The CRC-32 in the name is checked on every hit (see store.ts): an entry
 * cut short by a crash or damaged on disk is a miss, never a wrong answer.
 */
export class CacheFiles {
  readonly entriesDir: string;
  readonly fillsDir: string;

  constructor(readonly dir: string) {
    this.entriesDir = join(dir, 'entries');
    this.fillsDir = join(dir, 'fills');
  }

  entryPath(entry: Pick<CacheEntry, 'hash' | 'crc'>): string {
    return join(this.entriesDir, entry.hash.slice(0, 2), entryName(entry));
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
   * The entries on disk, least recently filled first, and how many files
   * were not entries (removed). Fills a previous process left are removed.
   */
  async scan(): Promise<{ entries: CacheEntry[]; removed: number }> {
    await rm(this.fillsDir, { recursive: true, force: true });
    await this.prepare();
    const found: { entry: CacheEntry; mtime: number }[] = [];
    let removed = 0;
    for (const shard of await readdir(this.entriesDir)) {
      const shardDir = join(this.entriesDir, shard);
      let names: string[];
      try {
        names = await readdir(shardDir);
      } catch {
        continue;
      }
      for (const name of names) {
        const parsed = parseEntryName(name);
        const path = join(shardDir, name);
        const info = await stat(path).catch(() => null);
        if (!parsed || parsed.hash.slice(0, 2) !== shard || !info?.isFile()) {
          await rm(path, { recursive: true, force: true });
          removed++;
          continue;
        }
        found.push({ entry: { ...parsed, size: info.size }, mtime: info.mtimeMs });
      }
    }
    found.sort((a, b) => a.mtime - b.mtime);
    return { entries: found.map((f) => f.entry), removed };
  }
}

const ENTRY_NAME = /^([0-9a-f]{64})-([0-9a-f]{8})$/;

function entryName(entry: Pick<CacheEntry, 'hash' | 'crc'>): string {
  return `${entry.hash}-${entry.crc.toString(16).padStart(8, '0')}`;
}

export function parseEntryName(name: string): Pick<CacheEntry, 'hash' | 'crc'> | null {
  const m = ENTRY_NAME.exec(name);
  if (!m?.[1] || !m[2]) return null;
  return { hash: m[1], crc: Number.parseInt(m[2], 16) };
}
