import { describe, expect, it } from 'vitest';
import { SharedSync } from '../../src/blobstore/shared-sync.js';

/** A sync that records when each call starts and finishes, and finishes when told. */
function controlledSync() {
  const events: string[] = [];
  const finishers: Array<(err?: Error) => void> = [];
  let n = 0;
  const sync = (dir: string) => {
    const id = ++n;
    events.push(`start ${id} ${dir}`);
    return new Promise<void>((resolve, reject) => {
      finishers.push((err) => {
        events.push(`end ${id} ${dir}`);
        if (err) reject(err);
        else resolve();
      });
    });
  };
  return { events, finishers, sync, calls: () => n };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('SharedSync', () => {
  it('callers arriving during an fsync share the next one, never the running one', async () => {
    const c = controlledSync();
    const shared = new SharedSync(c.sync);
    const answered: string[] = [];
    const first = shared.request('d').then(() => answered.push('first'));
    await tick();
    // Their entries may have been made after fsync 1 began: they must wait for fsync 2.
    const late = ['a', 'b', 'c'].map((n) => shared.request('d').then(() => answered.push(n)));
    await tick();
    expect(c.calls()).toBe(1);
    c.finishers[0]?.();
    await first;
    await tick();
    expect(answered).toEqual(['first']);
    expect(c.calls()).toBe(2);
    c.finishers[1]?.();
    await Promise.all(late);
    expect(answered).toEqual(['first', 'a', 'b', 'c']);
    expect(c.events).toEqual(['start 1 d', 'end 1 d', 'start 2 d', 'end 2 d']);
    expect(shared.pending).toBe(0);
  });

  it('keeps directories apart and forgets them when done', async () => {
    const c = controlledSync();
    const shared = new SharedSync(c.sync);
    const x = shared.request('x');
    const y = shared.request('y');
    expect(c.calls()).toBe(2);
    expect(shared.pending).toBe(2);
    for (const finish of c.finishers) finish();
    await Promise.all([x, y]);
    expect(shared.pending).toBe(0);
    // A later request starts a fresh fsync.
    const again = shared.request('x');
    expect(c.calls()).toBe(3);
    c.finishers[2]?.();
    await again;
  });

  it('a failed fsync fails everyone who shared it, and the next caller tries again', async () => {
    const c = controlledSync();
    const shared = new SharedSync(c.sync);
    const first = shared.request('d');
    await tick();
    const second = shared.request('d');
    const third = shared.request('d');
    c.finishers[0]?.(new Error('EIO'));
    await expect(first).rejects.toThrow('EIO');
    await tick();
    c.finishers[1]?.(new Error('EIO again'));
    await expect(second).rejects.toThrow('EIO again');
    await expect(third).rejects.toThrow('EIO again');
    expect(shared.pending).toBe(0);
    const fourth = shared.request('d');
    c.finishers[2]?.();
    await expect(fourth).resolves.toBeUndefined();
  });
});
