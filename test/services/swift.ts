import { execFile, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort, type S3Service } from './ceph.js';

const SCRIPT = fileURLToPath(new URL('./swift-cluster.sh', import.meta.url));
const run = promisify(execFile);

/** Starts a throw-away OpenStack Swift with the s3api middleware (about 10 s). */
export async function startSwift(): Promise<S3Service & { stop(): void }> {
  const dir = join(tmpdir(), `s3dedup-swift-${process.pid}-${Date.now()}`);
  const ports: number[] = [];
  while (ports.length < 5) {
    const port = await freePort();
    if (!ports.includes(port)) ports.push(port);
  }
  const stop = () => {
    spawnSync('bash', [SCRIPT, 'stop', dir], { stdio: 'ignore' });
  };
  try {
    await run('bash', [SCRIPT, 'start', dir, ...ports.map(String)], {
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (err) {
    stop();
    const e = err as { stderr?: string; message: string };
    throw new Error(
      `could not start OpenStack Swift for the tests: ${e.message}\n${e.stderr ?? ''}`,
    );
  }
  // tempauth's user "test:tester" with key "testing" (see swift-cluster.sh).
  return {
    endpoint: `http://127.0.0.1:${ports[0]}`,
    accessKey: 'test:tester',
    secretKey: 'testing',
    dir,
    stop,
  };
}
