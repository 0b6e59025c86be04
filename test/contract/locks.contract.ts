import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LockManager, withLock } from '../../src/locks/port.js';

export interface LockHarness {
  /** Two managers over the same lock space (two processes' worth for distributed locks). */
  a: LockManager;
  b: LockManager;
  close(): Promise<void>;
}

let n = 0;
const key = (what: string) => `test:${what}:${process.pid}:${Date.now()}:${n++}`;
const opts = { timeoutMs: 2000 };

/** The behaviour every LockManager (memory, PostgreSQL) must have. */
export function lockContract(name: string, open: () => Promise<LockHarness>): void {
  describe(`LockManager contract: ${name}`, () => {
    let h: LockHarness;
    beforeAll(async () => {
      h = await open();
    });
    afterAll(async () => {
      await h?.close();
    });

    it('excludes a second exclusive holder until release', async () => {
      const k = key('x');
      const first = await h.a.acquire(k, 'exclusive', opts);
      let got = false;
      const second = h.b.acquire(k, 'exclusive', opts).then((l) => {
        got = true;
        return l;
      });
      await sleep(100);
      expect(got).toBe(false);
      await first.release();
      await (await second).release();
      expect(got).toBe(true);
    });

    it('lets shared holders in together and keeps an exclusive one out', async () => {
      const k = key('s');
      const r1 = await h.a.acquire(k, 'shared', opts);
      const r2 = await h.b.acquire(k, 'shared', { timeoutMs: 500 });
      let writer = false;
      const w = h.a.acquire(k, 'exclusive', opts).then((l) => {
        writer = true;
        return l;
      });
      await sleep(100);
      expect(writer).toBe(false);
      await r1.release();
      await sleep(50);
      expect(writer).toBe(false);
      await r2.release();
      await (await w).release();
      expect(writer).toBe(true);
    });

    it('keeps shared holders out while exclusive is held', async () => {
      const k = key('xs');
      const w = await h.a.acquire(k, 'exclusive', opts);
      await expect(h.b.acquire(k, 'shared', { timeoutMs: 150 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      await w.release();
      await (await h.b.acquire(k, 'shared', opts)).release();
    });

    it('never blocks different keys', async () => {
      const l1 = await h.a.acquire(key('k1'), 'exclusive', opts);
      const l2 = await h.b.acquire(key('k2'), 'exclusive', { timeoutMs: 200 });
      await l1.release();
      await l2.release();
    });

    it('times out with LOCK_TIMEOUT within a bounded time, and the key stays usable', async () => {
      const k = key('t');
      const held = await h.a.acquire(k, 'exclusive', opts);
      const started = Date.now();
      await expect(h.b.acquire(k, 'exclusive', { timeoutMs: 200 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      expect(Date.now() - started).toBeLessThan(2000);
      await held.release();
      await (await h.b.acquire(k, 'exclusive', opts)).release();
    });

    it('gives up when the signal aborts', async () => {
      const k = key('abort');
      const held = await h.a.acquire(k, 'exclusive', opts);
      const controller = new AbortController();
      const waiting = h.b.acquire(k, 'exclusive', { timeoutMs: 5000, signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await expect(waiting).rejects.toMatchObject({ code: 'CLIENT_ABORTED' });
      await held.release();
      await (await h.a.acquire(k, 'exclusive', opts)).release();
    });

    it('releases when the guarded work throws', async () => {
      const k = key('err');
      await expect(
        withLock(h.a, k, 'exclusive', opts, async () => {
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      await (await h.b.acquire(k, 'exclusive', { timeoutMs: 200 })).release();
    });

    it('release is idempotent', async () => {
      const k = key('idem');
      const l = await h.a.acquire(k, 'exclusive', opts);
      await l.release();
      await l.release();
      const other = await h.b.acquire(k, 'exclusive', { timeoutMs: 200 });
      await l.release(); // must not release someone else's hold
      await expect(h.a.acquire(k, 'exclusive', { timeoutMs: 100 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      await other.release();
    });

    it('serializes a critical section across many contenders', async () => {
      const k = key('mutex');
      let inside = 0;
      let maxInside = 0;
      let counter = 0;
      await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          withLock(i % 2 ? h.a : h.b, k, 'exclusive', { timeoutMs: 10_000 }, async () => {
            inside++;
            maxInside = Math.max(maxInside, inside);
            const seen = counter;
            await sleep(2);
            counter = seen + 1;
            inside--;
          }),
        ),
      );
      expect(maxInside).toBe(1);
      expect(counter).toBe(20);
    });
  });
}
