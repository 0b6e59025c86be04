/**
 * Named points between the storage and metadata steps of every write path,
 * where the crash tests (test/e2e/crash.suite.ts) make the process die, as a
 * power cut or SIGKILL would, to show the invariants hold whatever the
 * instant. A point kills the process only when S3DEDUP_CRASH_AT names it;
 * otherwise it is one comparison with an empty string.
 */
const armed = process.env.S3DEDUP_CRASH_AT ?? '';

export type CrashPoint =
  // PUT: the body checked, nothing stored yet.
  | 'put.checked'
  // Filesystem store: the object's temporary file written and fsynced, not linked.
  | 'fs.temp-written'
  // Filesystem store: linked under its key, the directory not fsynced.
  | 'fs.linked'
  // S3 store: every part uploaded, the multipart upload not completed.
  | 's3.parts-uploaded'
  // PUT: the object stored (or found), the metadata not changed.
  | 'put.object-stored'
  // PUT of a damaged content: the object replaced, the mark not cleared.
  | 'put.object-restored'
  // PUT: the metadata committed, not answered.
  | 'put.committed'
  // DELETE: the metadata committed, not answered.
  | 'delete.committed'
  // Cleaner: rows of unreferenced blobs deleted, their objects not.
  | 'cleaner.rows-deleted'
  // Cleaner: the objects deleted too.
  | 'cleaner.objects-deleted';

export function crashPoint(name: CrashPoint): void {
  if (armed === name) process.kill(process.pid, 'SIGKILL');
}
