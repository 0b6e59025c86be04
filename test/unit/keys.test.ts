import { describe, expect, it } from 'vitest';
import { blobKey, hashOfKey } from '../../src/dedup/keys.js';

const hash = 'ab12cd34'.repeat(8);

describe('blob keys', () => {
  it.each([0, 1, 2, 3])('hashOfKey reads back what blobKey wrote at depth %i', (depth) => {
    const key = blobKey(hash, depth);
    expect(key).toBe(`${['ab/', 'ab/12/', 'ab/12/cd/'][depth - 1] ?? ''}${hash}`);
    expect(hashOfKey(key, depth)).toBe(hash);
  });

  it.each([
    ['another depth', `ab/12/${hash}`, 1],
    ['a shard that is not the hash’s', `ab/13/${hash}`, 2],
    ['a shard in the wrong place', `12/ab/${hash}`, 2],
    ['no separator', `ab-12/${hash}`, 2],
    ['upper-case hex', `AB/12/${hash.toUpperCase()}`, 2],
    ['a short hash', `ab/12/${hash.slice(1)}`, 2],
    ['something after the hash', `ab/12/${hash}.tmp`, 2],
    ['not hex', `ab/12/${'g'.repeat(64)}`, 2],
  ])('hashOfKey refuses %s', (_what, key, depth) => {
    expect(hashOfKey(key, depth)).toBeNull();
  });
});
