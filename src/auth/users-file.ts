import { randomBytes } from 'node:crypto';
import { open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { hashFormatProblem } from './password.js';

/** `read`: GET, HEAD and list; `write`: every route. */
export type Role = 'read' | 'write';

export interface UserEntry {
  name: string;
  role: Role;
  /** A $scrypt$ PHC string (src/auth/password.ts). */
  hash: string;
}

/** A users file that cannot be used; the message names the file and line, never a hash. */
export class UsersFileError extends Error {
  override name = 'UsersFileError';
}

export const ROLES: readonly Role[] = ['read', 'write'];

// No colon: HTTP Basic splits the credentials at the first one.
const NAME = /^[A-Za-z0-9._@-]{1,64}$/;

export const isRole = (value: string): value is Role =>
  (ROLES as readonly string[]).includes(value);

/** null when `name` can be a user name, else why not. */
export function userNameProblem(name: string): string | null {
  return NAME.test(name)
    ? null
    : `user name ${shown(name)} must be 1 to 64 characters of A-Z a-z 0-9 . _ @ -`;
}

/**
 * A field quoted in a message, unless it might be a hash (a line with its
 * fields in the wrong order puts the hash where the name or role belongs).
 */
function shown(value: string): string {
  return value.includes('$') || value.length > 64 ? '(not shown)' : JSON.stringify(value);
}

/** Lines that hold no user: blank ones and comments. */
const isUserLine = (line: string) => {
  const t = line.trim();
  return t !== '' && !t.startsWith('#');
};

/** `name:role:hash` lines; blank lines and `#` comments are skipped. `source` names the file in errors. */
export function parseUsers(text: string, source: string): Map<string, UserEntry> {
  const users = new Map<string, UserEntry>();
  const lineOf = new Map<string, number>();
  text.split('\n').forEach((raw, i) => {
    if (!isUserLine(raw)) return;
    const where = `${source} line ${i + 1}`;
    const fields = raw.trim().split(':');
    if (fields.length !== 3) {
      throw new UsersFileError(
        `${where}: expected name:role:hash, found ${fields.length} field${fields.length === 1 ? '' : 's'}`,
      );
    }
    const [name = '', role = '', hash = ''] = fields;
    const nameProblem = userNameProblem(name);
    if (nameProblem) throw new UsersFileError(`${where}: ${nameProblem}`);
    if (!isRole(role)) {
      throw new UsersFileError(
        `${where}: user ${name}: unknown role ${shown(role)} (must be read or write)`,
      );
    }
    const hashProblem = hashFormatProblem(hash);
    if (hashProblem) {
      throw new UsersFileError(`${where}: user ${name}: bad password hash: ${hashProblem}`);
    }
    const first = lineOf.get(name);
    if (first !== undefined) {
      throw new UsersFileError(`${where}: user ${name} is already defined on line ${first}`);
    }
    lineOf.set(name, i + 1);
    users.set(name, { name, role, hash });
  });
  return users;
}

/**
 * The file's text; '' when `missingOk` and it does not exist. Errors are
 * UsersFileErrors naming the file.
 */
export async function readUsersText(path: string, missingOk = false): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      if (missingOk) return '';
      throw new UsersFileError(
        `users file ${path} does not exist (create it with: s3dedup user add NAME --role read|write)`,
      );
    }
    throw new UsersFileError(`users file ${path}: ${(err as Error).message}`);
  }
}

export async function readUsersFile(path: string): Promise<Map<string, UserEntry>> {
  return parseUsers(await readUsersText(path), path);
}

const lineFor = (entry: UserEntry) => `${entry.name}:${entry.role}:${entry.hash}`;

/** Index of the line that defines `name`, or -1. */
function lineIndex(lines: string[], name: string): number {
  return lines.findIndex((line) => isUserLine(line) && line.trim().split(':')[0] === name);
}

/**
 * The text with `entry` in place of the line defining its name, or appended;
 * every other line (comments included) as it was. The text must parse.
 */
export function setUser(
  text: string,
  entry: UserEntry,
  source: string,
): { text: string; replaced: boolean } {
  parseUsers(text, source);
  const lines = text.split('\n');
  const at = lineIndex(lines, entry.name);
  if (at >= 0) {
    // Keep a CRLF file's line endings as they were.
    const cr = lines[at]?.endsWith('\r') ? '\r' : '';
    lines[at] = `${lineFor(entry)}${cr}`;
    return { text: lines.join('\n'), replaced: true };
  }
  const sep = text === '' || text.endsWith('\n') ? '' : '\n';
  return { text: `${text}${sep}${lineFor(entry)}\n`, replaced: false };
}

/** The text without the line defining `name`; every other line as it was. The text must parse. */
export function removeUser(
  text: string,
  name: string,
  source: string,
): { text: string; removed: boolean } {
  parseUsers(text, source);
  const lines = text.split('\n');
  const at = lineIndex(lines, name);
  if (at < 0) return { text, removed: false };
  lines.splice(at, 1);
  return { text: lines.join('\n'), removed: true };
}

/**
 * Replaces the file with `text` at once: a server reading it meanwhile sees
 * the old content or the new, never a part. Mode 0600 (it holds password
 * hashes); the owner of the file it replaces is kept where we may, so that
 * `sudo s3dedup user add` leaves a file the server's user can still read.
 */
export async function writeUsersFile(path: string, text: string): Promise<void> {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const previous = await stat(path).catch(() => undefined);
  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.writeFile(text, 'utf8');
      // open's mode passes through the umask, which may only take bits away;
      // set it exactly anyway, for a umask that takes the owner's.
      await handle.chmod(0o600);
      if (previous && process.getuid?.() === 0) {
        await handle.chown(previous.uid, previous.gid);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (err) {
    await unlink(temp).catch(() => {});
    throw err;
  }
  // The rename itself reaches the disk when the folder does.
  const folder = await open(dir, 'r').catch(() => undefined);
  if (folder)
    await folder
      .sync()
      .finally(() => folder.close())
      .catch(() => {});
}
