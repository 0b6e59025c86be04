/** Reading `ftload.py`'s report (bench/ftload.ts runs it). */

/** One line of ftload's report. */
export interface FtloadLine {
  method: 'PUT' | 'GET';
  size: string;
  count: number;
  concurrency: number;
  ok: number;
  errors: number;
  filesPerSecond: number;
  mibPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

const LINE =
  /^(PUT|GET)\s+(\S+) x (\d+)\s+c=(\d+)\s+(\d+) ok\s+(\d+) err\s+[\d.]+ s\s+([\d.]+) files\/s\s+([\d.]+) MiB\/s.*p50 ([\d.]+) ms\s+p99 ([\d.]+) ms/;

/** The result lines of one ftload run; anything else it prints is ignored. */
export function parseFtload(output: string): FtloadLine[] {
  const lines: FtloadLine[] = [];
  for (const text of output.split('\n')) {
    const m = LINE.exec(text.trim());
    if (!m) continue;
    lines.push({
      method: m[1] as 'PUT' | 'GET',
      size: m[2] ?? '',
      count: Number(m[3]),
      concurrency: Number(m[4]),
      ok: Number(m[5]),
      errors: Number(m[6]),
      filesPerSecond: Number(m[7]),
      mibPerSecond: Number(m[8]),
      p50Ms: Number(m[9]),
      p99Ms: Number(m[10]),
    });
  }
  return lines;
}
