import type { TestProject } from 'vitest/node';
import { type S3Service, startCeph } from './ceph.js';
import { type PostgresService, startPostgres } from './postgres.js';
import { startSwift } from './swift.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Ceph radosgw: the S3 server most suites use. */
    s3: S3Service;
    /** OpenStack Swift's s3api: the second S3 implementation (no conditional PutObject). */
    swift: S3Service;
    postgres: PostgresService;
  }
}

/**
 * Starts the real services the suites need, once per run, and stops them
 * afterwards (also when tests fail, and on Ctrl-C). A service that cannot
 * start fails the run: nothing is skipped.
 */
export default async function setup(project: TestProject) {
  const started = await Promise.allSettled([startCeph(), startSwift(), startPostgres()]);
  const stopAll = () => {
    for (const s of started) if (s.status === 'fulfilled') s.value.stop();
  };
  const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  const [ceph, swift, postgres] = started;
  if (
    failed ||
    ceph?.status !== 'fulfilled' ||
    swift?.status !== 'fulfilled' ||
    postgres?.status !== 'fulfilled'
  ) {
    stopAll();
    throw failed?.reason ?? new Error('a test service did not start');
  }
  process.once('exit', stopAll);
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  const s3 = (service: S3Service): S3Service => ({
    endpoint: service.endpoint,
    accessKey: service.accessKey,
    secretKey: service.secretKey,
    dir: service.dir,
  });
  project.provide('s3', s3(ceph.value));
  project.provide('swift', s3(swift.value));
  project.provide('postgres', { url: postgres.value.url, dir: postgres.value.dir });
  return () => {
    process.off('exit', stopAll);
    stopAll();
  };
}
