/** One cached blob: its content hash and its stored (gzip) size. */
export interface CacheEntry {
  hash: string;
  size: number;
  /** Set once its file's bytes were checked: which file that was (see store.ts). */
  stamp?: string;
}

/** Hashes the doorkeeper remembers; a 48-bit fingerprint each, so about 3 MB at most. */
const DOORKEEPER_SIZE = 65_536;

/**
 * Which blobs the cache holds, in least-recently-used order, and which it
 * lets in. Pure bookkeeping: the files are the caller's business.
 *
 * Admission: while the entries fit under the bound, every verified fill is
 * kept. Once the cache is full, a new blob may only push others out if it
 * was missed before, recently (the "doorkeeper" of TinyLFU): one pass over
 * many cold files, a migration or an fsck reading everything, then only
 * passes through, and the hot set that every submission's tests read stays.
 */
export class CacheIndex {
  /** Map order is recency: the first entry is the least recently used. */
  private readonly entries = new Map<string, CacheEntry>();
  private readonly doorkeeper = new Set<number>();
  private total = 0;

  constructor(
    readonly maxBytes: number,
    readonly maxEntryBytes: number,
  ) {}

  get bytes(): number {
    return this.total;
  }

  get count(): number {
    return this.entries.size;
  }

  /** The entry, now the most recently used; undefined on a miss. */
  use(hash: string): CacheEntry | undefined {
    const entry = this.entries.get(hash);
    if (entry) {
      this.entries.delete(hash);
      this.entries.set(hash, entry);
    }
    return entry;
  }

  /** The entry, its recency unchanged. */
  peek(hash: string): CacheEntry | undefined {
    return this.entries.get(hash);
  }

  has(hash: string): boolean {
    return this.entries.has(hash);
  }

  /**
   * Whether a miss of `size` bytes should fill the cache. A refusal for want
   * of room remembers the hash, so that its next miss is let in.
   */
  admit(hash: string, size: number): boolean {
    if (size > this.maxEntryBytes || this.entries.has(hash)) return false;
    if (this.total + size <= this.maxBytes) return true;
    const print = fingerprint(hash);
    if (this.doorkeeper.delete(print)) return true;
    this.doorkeeper.add(print);
    if (this.doorkeeper.size > DOORKEEPER_SIZE) {
      const oldest = this.doorkeeper.values().next().value;
      if (oldest !== undefined) this.doorkeeper.delete(oldest);
    }
    return false;
  }

  /**
   * Records a filled entry as the most recently used; answers the entries
   * pushed out to stay under the bound (their files are to be removed).
   */
  add(entry: CacheEntry): CacheEntry[] {
    this.remove(entry.hash);
    this.entries.set(entry.hash, entry);
    this.total += entry.size;
    const evicted: CacheEntry[] = [];
    for (const oldest of this.entries.values()) {
      if (this.total <= this.maxBytes) break;
      if (oldest === entry) continue;
      this.remove(oldest.hash);
      evicted.push(oldest);
    }
    return evicted;
  }

  remove(hash: string): CacheEntry | undefined {
    const entry = this.entries.get(hash);
    if (entry) {
      this.entries.delete(hash);
      this.total -= entry.size;
    }
    return entry;
  }
}

function fingerprint(hash: string): number {
  return Number.parseInt(hash.slice(0, 12), 16);
}
