import { stat } from 'node:fs/promises';
import { StartupError } from '../errors.js';
import type { Logger } from '../observability/logger.js';
import { readUsersFile, type UserEntry } from './users-file.js';

/**
 * What identifies one version of the file. Editors and `s3dedup user` replace
 * it by rename (a new inode, possibly the same size and second), so the inode
 * and change time count as much as the modification time.
 */
async function stampOf(path: string): Promise<string> {
  try {
    const s = await stat(path, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch (err) {
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

/**
 * The users of AUTH_USERS_FILE, kept current without a restart: the file is
 * polled (a stat, cheap) so that a revoked user is refused within a second.
 * Polling rather than fs.watch: watches lose track of a file replaced by
 * rename, and do not work on every filesystem a deployment mounts.
 */
export class UserDirectory {
  private users: Map<string, UserEntry>;
  private stamp: string;
  /** The version whose reload failed and was logged, so each bad version is logged once. */
  private failedStamp: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly logger: Logger,
    private readonly pollMs: number,
    users: Map<string, UserEntry>,
    stamp: string,
  ) {
    this.users = users;
    this.stamp = stamp;
    this.schedule();
  }

  /** Reads the file; a missing or malformed one is a StartupError saying what is wrong. */
  static async open(
    path: string,
    logger: Logger,
    options: { pollMs?: number } = {},
  ): Promise<UserDirectory> {
    // Stat before reading: a change between the two is then seen by the next poll.
    const stamp = await stampOf(path);
    let users: Map<string, UserEntry>;
    try {
      users = await readUsersFile(path);
    } catch (err) {
      throw new StartupError(`AUTH_USERS_FILE: ${(err as Error).message}`);
    }
    logger.info({ file: path, users: users.size }, 'access control on: users file read');
    if (users.size === 0) warnNoUsers(logger, path);
    return new UserDirectory(path, logger, options.pollMs ?? 250, users, stamp);
  }

  lookup(name: string): UserEntry | undefined {
    return this.users.get(name);
  }

  get size(): number {
    return this.users.size;
  }

  /** Re-reads the file if it changed since it was last read (the poll runs this). */
  async refresh(): Promise<void> {
    const stamp = await stampOf(this.path);
    if (stamp === this.stamp || stamp === this.failedStamp) return;
    let users: Map<string, UserEntry>;
    try {
      users = await readUsersFile(this.path);
    } catch (err) {
      // Half-written (edited in place, not replaced): the next poll reads it whole.
      if ((await stampOf(this.path)) !== stamp) return;
      this.failedStamp = stamp;
      this.logger.error(
        { file: this.path, users: this.users.size },
        `users file not reloaded, the last good one stays in use: ${(err as Error).message}`,
      );
      return;
    }
    // Changed while we read it: what parsed may be half of it. The next poll reads it whole.
    if ((await stampOf(this.path)) !== stamp) return;
    this.users = users;
    this.stamp = stamp;
    this.failedStamp = undefined;
    this.logger.info({ file: this.path, users: users.size }, 'users file reloaded');
    if (users.size === 0) warnNoUsers(this.logger, this.path);
  }

  /** Stops watching. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.closed) return;
    // A timeout chain, not an interval: a slow read never overlaps the next.
    this.timer = setTimeout(() => {
      this.refresh()
        .catch((err: unknown) => this.logger.error({ err }, 'users file check failed'))
        .finally(() => this.schedule());
    }, this.pollMs);
    this.timer.unref();
  }
}

function warnNoUsers(logger: Logger, path: string): void {
  logger.warn(
    { file: path },
    'the users file has no users: every request but /version and /health is refused',
  );
}
