/**
 * Directory fsyncs shared by the PUTs of one moment (group commit).
 *
 * A PUT's new directory entry is durable once an fsync of the directory has
 * *started* after the entry was made. So a caller arriving while an fsync of
 * the same directory is running cannot use that one (its entry may have
 * missed it), but every caller arriving during it can share the next one:
 * at most one fsync runs per directory and at most one more is queued,
 * however many PUTs land there at once. With PUTs spread over many shard
 * directories the gain is small; with PUTs into one directory (the root
 * while new shards appear, a hot shard) it turns N fsyncs into about two.
 */
export class SharedSync {
  private readonly dirs = new Map<string, { running?: Promise<void>; queued?: Promise<void> }>();

  constructor(private readonly sync: (dir: string) => Promise<void>) {}

  /** Resolves once an fsync of `dir` that started after this call has finished. */
  request(dir: string): Promise<void> {
    let state = this.dirs.get(dir);
    if (!state) {
      state = {};
      this.dirs.set(dir, state);
    }
    const s = state;
    // A queued fsync starts after this call, so it serves this caller too.
    if (s.queued) return s.queued;
    if (!s.running) return this.run(dir, s);
    s.queued = s.running.then(noop, noop).then(() => {
      s.queued = undefined;
      return this.run(dir, s);
    });
    return s.queued;
  }

  private run(dir: string, s: { running?: Promise<void>; queued?: Promise<void> }): Promise<void> {
    const running: Promise<void> = this.sync(dir).finally(() => {
      if (s.running === running) s.running = undefined;
      // Nothing running or queued: forget the directory, so the map stays as small as the moment's PUTs.
      if (!s.running && !s.queued) this.dirs.delete(dir);
    });
    s.running = running;
    return running;
  }

  /** Directories with an fsync running or queued (for tests). */
  get pending(): number {
    return this.dirs.size;
  }
}

function noop(): void {}
