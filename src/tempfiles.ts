import { randomUUID } from 'node:crypto';
import { readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Names of temporary files carry the owning process id, so a process that
 * starts later can tell the leftovers of a crashed one (its pid is gone) from
 * files another live process (a migration next to the server) is still using.
 */
export function tempName(kind: string): string {
  return `${kind}-${process.pid}-${randomUUID()}`;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes `kind-<pid>-*` files in `dir` whose process no longer runs; returns how many. */
export async function removeOrphanedTempFiles(dir: string, kind: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  let removed = 0;
  for (const name of names) {
    const pid = Number(new RegExp(`^${kind}-(\\d+)-`).exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid === process.pid || alive(pid)) continue;
    await unlink(join(dir, name)).then(
      () => removed++,
      () => {},
    );
  }
  return removed;
}
