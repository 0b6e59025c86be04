import { execFile, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort } from './ceph.js';

const SCRIPT = fileURLToPath(new URL('./postgres.sh', import.meta.url));
const run = promisify(execFile);

export interface PostgresService {
  /** Connection URL of the server's `postgres` database (superuser, no password). */
  url: string;
  /** The cluster folder, for restarting the server in fault tests. */
  dir: string;
}

/** Starts a throw-away PostgreSQL server (about 1 s). */
export async function startPostgres(): Promise<PostgresService & { stop(): void }> {
  const dir = join(tmpdir(), `s3dedup-pg-${process.pid}-${Date.now()}`);
  const port = await freePort();
  const stop = () => {
    spawnSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore' });
  };
  try {
    const { stdout } = await run('bash', [SCRIPT, 'start', dir, String(port)]);
    return { url: stdout.trim(), dir, stop };
  } catch (err) {
    stop();
    const e = err as { stderr?: string; message: string };
    throw new Error(`could not start PostgreSQL for the tests: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/** Stops ('pause') or starts again ('resume') the server of a cluster; the data stays. */
export async function postgresOutage(dir: string, action: 'pause' | 'resume'): Promise<void> {
  await run('bash', [SCRIPT, action, dir]);
}
