import type { TestProject } from 'vitest/node';
import { type S3Service, startCeph } from './ceph.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3Service;
  }
}

/**
 * Starts the real services the suites need, once per run, and stops them
 * afterwards (also when tests fail, and on Ctrl-C). A service that cannot
 * start fails the run: nothing is skipped.
 */
export default async function setup(project: TestProject) {
  const ceph = await startCeph();
  const onExit = () => ceph.stop();
  process.once('exit', onExit);
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  project.provide('s3', {
    endpoint: ceph.endpoint,
    accessKey: ceph.accessKey,
    secretKey: ceph.secretKey,
    dir: ceph.dir,
  });
  return () => {
    process.off('exit', onExit);
    ceph.stop();
  };
}
