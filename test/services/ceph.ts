import { execFile, spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const SCRIPT = fileURLToPath(new URL('./ceph-cluster.sh', import.meta.url));
const run = promisify(execFile);

export interface S3Service {
  endpoint: string;
  accessKey: string;
  secretKey: string;
  /** The cluster folder, for stopping and restarting radosgw in fault tests. */
  dir: string;
}

/** A free TCP port below 32768 (this machine's ephemeral range starts there). */
export async function freePort(from = 20000, to = 32000): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = from + Math.floor(Math.random() * (to - from));
    const ok = await new Promise<boolean>((resolve) => {
      const server = createServer();
      server.once('error', () => resolve(false));
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
    });
    if (ok) return port;
  }
  throw new Error('no free port found');
}

/** Starts a throw-away Ceph cluster with radosgw (about 16 s). */
export async function startCeph(): Promise<S3Service & { stop(): void }> {
  const dir = join(tmpdir(), `s3dedup-ceph-${process.pid}-${Date.now()}`);
  const rgwPort = await freePort();
  let monPort = await freePort();
  while (monPort === rgwPort) monPort = await freePort();
  const accessKey = 's3dedup-test-access';
  const secretKey = 's3dedup-test-secret-key-0123456789';
  const stop = () => {
    spawnSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore' });
  };
  try {
    await run(
      'bash',
      [SCRIPT, 'start', dir, String(rgwPort), String(monPort), accessKey, secretKey],
      {
        env: { ...process.env, CEPH_MEMSTORE_BYTES: String(8 * 1024 ** 3) },
        maxBuffer: 16 * 1024 * 1024,
      },
    );
  } catch (err) {
    stop();
    const e = err as { stderr?: string; message: string };
    throw new Error(`could not start Ceph radosgw for the tests: ${e.message}\n${e.stderr ?? ''}`);
  }
  return { endpoint: `http://127.0.0.1:${rgwPort}`, accessKey, secretKey, dir, stop };
}

/** Stops or starts only the radosgw daemon, leaving the cluster and its data (fault tests). */
export async function radosgw(dir: string, action: 'stop' | 'start'): Promise<void> {
  await run('bash', [SCRIPT, `${action}-rgw`, dir]);
}
