import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const run = (cmd: string, args: string[]) =>
  spawnSync(cmd, args, { cwd: root, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });

/** The formatter/linter and the type checker run as part of the suite, so CI enforces them. */
describe('code quality', () => {
  it('passes biome (format + lint)', () => {
    const r = run('npx', ['biome', 'check', '.']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 60_000);

  it('type-checks strictly, tests included', () => {
    const r = run('npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']);
    expect(r.status, r.stdout + r.stderr).toBe(0);
  }, 120_000);
});
