import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { advisoryKey } from '../../src/locks/keys.js';

describe('advisoryKey', () => {
  it('is stable across versions: these values must never change', () => {
    // Computed once and pinned: a different value would break mutual exclusion
    // between instances of different versions during a rolling upgrade.
    expect(advisoryKey('path:problems/sum/tests/1.in')).toBe(GOLDEN.path);
    expect(advisoryKey(`blob:${'a'.repeat(64)}`)).toBe(GOLDEN.blob);
    expect(advisoryKey('schema-migrations')).toBe(GOLDEN.migrations);
  });

  it('follows the documented derivation and fits a signed bigint', () => {
    for (const name of ['path:x', 'blob:y', 'commit:z', 'path:żółw/ünïcode']) {
      const expected = createHash('sha256').update(`s3dedup:${name}`).digest().readBigInt64BE(0);
      const key = BigInt(advisoryKey(name));
      expect(key).toBe(expected);
      expect(key >= -(2n ** 63n) && key < 2n ** 63n).toBe(true);
    }
  });

  it('tells names apart', () => {
    const keys = new Set(Array.from({ length: 10_000 }, (_, i) => advisoryKey(`path:file-${i}`)));
    expect(keys.size).toBe(10_000);
  });
});

const GOLDEN = {
  path: '-5395062110516320224',
  blob: '4063779323175496856',
  migrations: '5881705321702157640',
};
