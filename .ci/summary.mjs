// Prints "N passed, N failed" from vitest's JSON report. A run that failed
// without a failing test (a crash, an unhandled error, no report at all)
// counts as one failure, so CI can never read a broken run as green.
import { readFileSync } from 'node:fs';

const [file, exitStatus] = process.argv.slice(2);
let passed = 0;
let failed = 0;
try {
  const report = JSON.parse(readFileSync(file, 'utf8'));
  passed = report.numPassedTests ?? 0;
  failed = report.numFailedTests ?? 0;
  if (failed === 0 && (!report.success || exitStatus !== '0')) failed = 1;
} catch {
  failed = 1;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
