import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * The memory settings the CLI's shebang line passes to Node (see
 * src/cli/main.ts and docs/memory.md). A plain `node dist/cli/main.js`
 * start (a Dockerfile's CMD, a systemd unit, a process manager) passes none
 * of them, so applyMemorySettings() gets the same effects from inside the
 * process.
 */
export const SHEBANG_FLAGS = [
  '--max-semi-space-size=2',
  '--expose-gc',
  '--no-concurrent-array-buffer-sweeping',
] as const;

type Collect = (options: { type: 'minor' | 'major' }) => void;

let collect: Collect | undefined;

/**
 * Applies the shebang's memory settings when Node was started without them,
 * before the server allocates anything much:
 * - `--no-concurrent-array-buffer-sweeping` is read by V8 at each collection:
 *   set as it is;
 * - `--expose-gc` only affects contexts made afterwards: one is made to take
 *   its `gc` for the GC pacer (src/runtime/gc-pacer.ts);
 * - `--max-semi-space-size` is read once, when the heap is set up, and is
 *   ignored later. Its effect (a young generation that stays a few MB instead
 *   of growing to 32 MB under a streaming load) comes instead from stopping
 *   its growth: `--semi-space-growth-factor=1` is read at each growth, so the
 *   young generation keeps its initial 1 MB semi-spaces (half the CLI's).
 * test/e2e/memory.test.ts checks the bound with a plain `node` start.
 * Returns what was applied here (nothing under the `s3dedup` command).
 */
export function applyMemorySettings(execArgv: readonly string[] = process.execArgv): string[] {
  const applied: string[] = [];
  if (!execArgv.includes('--no-concurrent-array-buffer-sweeping')) {
    setFlagsFromString('--no-concurrent-array-buffer-sweeping');
    applied.push('--no-concurrent-array-buffer-sweeping');
  }
  if (!execArgv.some((f) => f.startsWith('--max-semi-space-size'))) {
    setFlagsFromString('--semi-space-growth-factor=1');
    applied.push('--semi-space-growth-factor=1');
  }
  if (typeof globalThis.gc === 'function') {
    collect = globalThis.gc as Collect;
  } else {
    setFlagsFromString('--expose-gc');
    collect = runInNewContext('gc') as Collect;
    applied.push('--expose-gc');
  }
  return applied;
}

/** Node's `gc`, for the GC pacer's minor and full collections (after applyMemorySettings, always there). */
export function exposedGc(): Collect | undefined {
  return collect ?? (globalThis.gc as Collect | undefined);
}
