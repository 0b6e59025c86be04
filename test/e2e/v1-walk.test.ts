import { execFile } from 'node:child_process';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir } from '../support/tmp.js';

const run = promisify(execFile);
const WALKER = new URL('../../dist/migration/v1-directory.js', import.meta.url).pathname;

/**
 * Walks a V1 folder with V1Directory in a Node process whose JS heap is
 * capped at 16 MB, and reports the count and the peak RSS (VmHWM). The
 * whole `migrate-v1` of 100,000 files (about 4 minutes of PUTs) is in
 * `npm run bench:migration`; this is its walk, which is what could grow
 * with the number of files.
 */
async function walk(dir: string): Promise<{ count: number; hwm: number }> {
  const script = `
    import { readFileSync } from 'node:fs';
    const { V1Directory } = await import(${JSON.stringify(WALKER)});
    let count = 0;
    for await (const _ of new V1Directory(${JSON.stringify(dir)}).list('')) count++;
    const hwm = Number(/VmHWM:\\s+(\\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))[1]) * 1024;
    console.log(JSON.stringify({ count, hwm }));
  `;
  const { stdout } = await run(process.execPath, [
    '--max-old-space-size=16',
    '--input-type=module',
    '-e',
    script,
  ]);
  return JSON.parse(stdout) as { count: number; hwm: number };
}

/** `count` files of a few bytes: `perDir` per folder, two levels deep. */
function tree(root: string, count: number, perDir: number): void {
  const time = new Date(1_234_567_890_000);
  for (let i = 0; i < count; i++) {
    const dir = join(
      root,
      'files',
      `c${Math.floor(i / perDir) % 10}`,
      `p${Math.floor(i / perDir)}`,
    );
    if (i % perDir === 0) mkdirSync(dir, { recursive: true });
    const file = join(dir, `${i}.in`);
    writeFileSync(file, `${i}\n`);
    utimesSync(file, time, time);
  }
}

describe('the V1 walk keeps memory flat', () => {
  let dir: Awaited<ReturnType<typeof makeTempDir>>;
  beforeAll(async () => {
    dir = await makeTempDir();
    tree(join(dir.path, 'small'), 1000, 100);
    // 100,000 files, one folder of 50,000 among them: a big directory is read in slices too.
    tree(join(dir.path, 'big'), 50_000, 1000);
    tree(join(dir.path, 'big', 'files', 'huge'), 50_000, 50_000);
  }, 180_000);
  afterAll(async () => {
    await dir?.remove();
  });

  it('100,000 files listed with a 16 MB heap, at the peak RSS of 1,000', async () => {
    const small = await walk(join(dir.path, 'small'));
    const big = await walk(join(dir.path, 'big'));
    expect(small.count).toBe(1000);
    expect(big.count).toBe(100_000);
    process.stdout.write(
      `V1 walk peak RSS: 1,000 files ${(small.hwm / 1e6).toFixed(1)} MB, 100,000 files ${(big.hwm / 1e6).toFixed(1)} MB\n`,
    );
    // Flat: what 99,000 more files may add is noise, not a per-file cost (10 MB would be 100 B a file).
    expect(big.hwm - small.hwm).toBeLessThan(10_000_000);
  }, 120_000);
});
