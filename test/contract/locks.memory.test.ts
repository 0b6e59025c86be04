import { describe, expect, it } from 'vitest';
import { MemoryLockManager } from '../../src/locks/memory.js';
import { lockContract } from './locks.contract.js';

lockContract('memory', async () => {
  const shared = new MemoryLockManager();
  return { a: shared, b: shared, close: () => shared.close() };
});

describe('MemoryLockManager specifics', () => {
  it('serves waiters in order, so a writer is not starved by later readers', async () => {
    const locks = new MemoryLockManager();
    const order: string[] = [];
    const r1 = await locks.acquire('k', 'shared', { timeoutMs: 1000 });
    const w = locks.acquire('k', 'exclusive', { timeoutMs: 1000 }).then((l) => {
      order.push('writer');
      return l;
    });
    const r2 = locks.acquire('k', 'shared', { timeoutMs: 1000 }).then((l) => {
      order.push('late reader');
      return l;
    });
    await r1.release();
    await (await w).release();
    await (await r2).release();
    expect(order).toEqual(['writer', 'late reader']);
  });

  it('forgets keys once nobody holds or waits for them', async () => {
    const locks = new MemoryLockManager();
    const held = await locks.acquire('a', 'exclusive', { timeoutMs: 1000 });
    await expect(locks.acquire('a', 'shared', { timeoutMs: 20 })).rejects.toThrow();
    expect(locks.activeKeys).toBe(1);
    await held.release();
    expect(locks.activeKeys).toBe(0);
  });
});
