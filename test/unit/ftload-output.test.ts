import { describe, expect, it } from 'vitest';
import { parseFtload } from '../../bench/ftload-output.js';

// Printed by ftload.py in this project's runs (header, results, an error line).
const OUTPUT = `# http://127.0.0.1:18091  data=random keepalive=True cpus=2  (MiB = 2^20 bytes of logical file content)
PUT        1KiB x 2000  c=8    2000 ok   0 err     8.54 s      234.3 files/s      0.23 MiB/s  (wire 0.23 MiB/s)  p50 33.4 ms  p99 58.9 ms
GET        1KiB x 2000  c=8    2000 ok   0 err     4.55 s      439.7 files/s      0.43 MiB/s  (wire 0.44 MiB/s)  p50 17.5 ms  p99 30.8 ms
PUT      200MiB x 1     c=1       1 ok   0 err     2.33 s        0.4 files/s     85.73 MiB/s  (wire 85.76 MiB/s)  p50 2331.0 ms  p99 2331.0 ms
GET        1MiB x 200   c=4     198 ok   2 err     0.79 s      250.6 files/s    250.63 MiB/s  (wire 250.70 MiB/s)  p50 14.7 ms  p99 30.1 ms
       error: 503 Service Unavailable
`;

describe("ftload.py's report", () => {
  it('reads every result line, with its figures, and nothing else', () => {
    const lines = parseFtload(OUTPUT);
    expect(lines.map((l) => `${l.method} ${l.size} x ${l.count} c=${l.concurrency}`)).toEqual([
      'PUT 1KiB x 2000 c=8',
      'GET 1KiB x 2000 c=8',
      'PUT 200MiB x 1 c=1',
      'GET 1MiB x 200 c=4',
    ]);
    expect(lines[0]).toEqual({
      method: 'PUT',
      size: '1KiB',
      count: 2000,
      concurrency: 8,
      ok: 2000,
      errors: 0,
      filesPerSecond: 234.3,
      mibPerSecond: 0.23,
      p50Ms: 33.4,
      p99Ms: 58.9,
    });
    expect(lines[2]).toMatchObject({ mibPerSecond: 85.73, p50Ms: 2331 });
    // A run with failures must be recognisable as one (bench/ftload.ts refuses it).
    expect(lines[3]).toMatchObject({ ok: 198, errors: 2 });
  });

  it('finds nothing in output that is not a report', () => {
    expect(parseFtload('server at http://x does not answer /version/ (404)\n')).toEqual([]);
  });
});
