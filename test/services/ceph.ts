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
        env: { ...process.env, CEPH_MEMSTORE_BYTES: String(6 * 1024 ** 3) },
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

/**
 * A radosgw of its own on the shared cluster, for fault tests: stopping it
 * takes S3 away from one test without disturbing the others running beside it.
 */
export async function extraRadosgw(
  dir: string,
): Promise<{ endpoint: string; stop(): Promise<void>; start(): Promise<void> }> {
  const name = `fault${process.pid}x${Date.now().toString(36)}`;
  const port = await freePort();
  await run('bash', [SCRIPT, 'add-rgw', dir, name, String(port)]);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    stop: async () => {
      await run('bash', [SCRIPT, 'stop-rgw', dir, name]);
    },
    start: async () => {
      await run('bash', [SCRIPT, 'start-rgw', dir, name]);
    },
  };
}
