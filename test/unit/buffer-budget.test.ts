import { describe, expect, it } from 'vitest';
import { UploadBuffers } from '../../src/blobstore/upload-buffers.js';
import { BufferBudget } from '../../src/runtime/buffer-budget.js';

const MiB = 1024 * 1024;

describe('BufferBudget', () => {
  it('holds at most limit / maxBody bodies, whatever their size, and never waits', () => {
    const budget = new BufferBudget(8 * MiB, 2 * MiB);
    const held = [1, 2, 3, 4].map(() => budget.tryTake(100_000));
    expect(held.every((h) => h !== null)).toBe(true);
    expect(budget.inUse).toBe(8 * MiB);
    // Full: the next body streams instead (null), however small.
    expect(budget.tryTake(70_000)).toBeNull();
    held[0]?.release();
    expect(budget.tryTake(70_000)).not.toBeNull();
  });

  it('refuses a body larger than maxBody', () => {
    const budget = new BufferBudget(8 * MiB, 2 * MiB);
    expect(budget.tryTake(2 * MiB + 1)).toBeNull();
    expect(budget.tryTake(2 * MiB)?.buffer.length).toBe(2 * MiB);
  });

  it('hands out buffers of the exact size and reuses them after release', () => {
    const budget = new BufferBudget(8 * MiB, 2 * MiB, 1);
    const first = budget.tryTake(1000);
    expect(first?.buffer.length).toBe(1000);
    const memory = first?.buffer.buffer;
    first?.release();
    first?.release(); // a second release gives back nothing more
    expect(budget.inUse).toBe(0);
    const second = budget.tryTake(5000);
    expect(second?.buffer.length).toBe(5000);
    expect(second?.buffer.buffer).toBe(memory);
    // Two held at once: the second is new memory.
    const third = budget.tryTake(5000);
    expect(third?.buffer.buffer).not.toBe(memory);
  });
});

describe('BufferBudget: memory held elsewhere, failures, the gauge', () => {
  it('counts reservations with the buffers, tells every change, and drops a buffer a failure may still use', () => {
    const seen: number[] = [];
    const budget = new BufferBudget(4 * MiB, 2 * MiB, 4, (held) => seen.push(held));
    const spill = budget.tryReserve(3 * MiB);
    expect(spill).not.toBeNull();
    // 3 MiB held: no whole 2 MiB buffer fits, and no second 3 MiB reservation.
    expect(budget.tryTake(1000)).toBeNull();
    expect(budget.tryReserve(3 * MiB)).toBeNull();
    spill?.();
    spill?.();
    const failed = budget.tryTake(1000);
    const memory = failed?.buffer.buffer;
    failed?.release(false);
    const next = budget.tryTake(1000);
    expect(next?.buffer.buffer).not.toBe(memory);
    next?.release();
    expect(budget.inUse).toBe(0);
    expect(seen).toEqual([3 * MiB, 0, 2 * MiB, 0, 2 * MiB, 0]);
  });
});

describe('UploadBuffers.reserve', () => {
  it('counts bytes held elsewhere against the budget and waits like take()', async () => {
    const buffers = new UploadBuffers(3 * MiB, 2 * MiB);
    const release = await buffers.reserve(2 * MiB);
    expect(buffers.inUse).toBe(2 * MiB);
    let granted = false;
    const waiting = buffers.reserve(2 * MiB).then((r) => {
      granted = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(granted).toBe(false);
    release();
    release(); // once only
    const second = await waiting;
    expect(buffers.inUse).toBe(2 * MiB);
    second();
    expect(buffers.inUse).toBe(0);
  });

  it('refuses more than a part and gives up when aborted', async () => {
    const buffers = new UploadBuffers(2 * MiB, 2 * MiB);
    await expect(buffers.reserve(2 * MiB + 1)).rejects.toThrow(/larger than a part/);
    const release = await buffers.reserve(2 * MiB);
    const abort = new AbortController();
    const waiting = buffers.reserve(MiB, abort.signal);
    abort.abort();
    await expect(waiting).rejects.toBeDefined();
    release();
    expect(buffers.inUse).toBe(0);
  });
});
