import type { TestProject } from 'vitest/node';
import { type S3Service, startCeph } from './ceph.js';
import { type PostgresService, startPostgres } from './postgres.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3Service;
    postgres: PostgresService;
  }
}

/**
 * Starts the real services the suites need, once per run, and stops them
 * afterwards (also when tests fail, and on Ctrl-C). A service that cannot
 * start fails the run: nothing is skipped.
 */
export default async function setup(project: TestProject) {
  const [ceph, postgres] = await Promise.allSettled([startCeph(), startPostgres()]);
  if (ceph.status === 'rejected' || postgres.status === 'rejected') {
    if (ceph.status === 'fulfilled') ceph.value.stop();
    if (postgres.status === 'fulfilled') postgres.value.stop();
    throw ceph.status === 'rejected' ? ceph.reason : (postgres as PromiseRejectedResult).reason;
  }
  const stopAll = () => {
    ceph.value.stop();
    postgres.value.stop();
  };
  process.once('exit', stopAll);
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  const { endpoint, accessKey, secretKey, dir } = ceph.value;
  project.provide('s3', { endpoint, accessKey, secretKey, dir });
  project.provide('postgres', { url: postgres.value.url, dir: postgres.value.dir });
  return () => {
    process.off('exit', stopAll);
    stopAll();
  };
}
