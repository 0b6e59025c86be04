import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Lock,
  type LockManager,
  type LockMode,
  type LockOptions,
  withLock,
} from '../../src/locks/port.js';

export interface LockHarness {
  /** Two managers over the same lock space (two processes' worth for distributed locks). */
  a: LockManager;
  b: LockManager;
  close(): Promise<void>;
}

let n = 0;
const key = (what: string) => `test:${what}:${process.pid}:${Date.now()}:${n++}`;
const opts = { timeoutMs: 2000 };

/** One request's worth: a session holding one lock, ended on release. */
async function acquire(
  manager: LockManager,
  k: string,
  mode: LockMode,
  options: LockOptions,
): Promise<Lock> {
  const session = manager.session();
  try {
    const lock = await session.acquire(k, mode, options);
    return {
      release: async () => {
        await lock.release();
        await session.end();
      },
    };
  } catch (err) {
    await session.end();
    throw err;
  }
}

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
      const first = await acquire(h.a, k, 'exclusive', opts);
      let got = false;
      const second = acquire(h.b, k, 'exclusive', opts).then((l) => {
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
      const r1 = await acquire(h.a, k, 'shared', opts);
      const r2 = await acquire(h.b, k, 'shared', { timeoutMs: 500 });
      let writer = false;
      const w = acquire(h.a, k, 'exclusive', opts).then((l) => {
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
      const w = await acquire(h.a, k, 'exclusive', opts);
      await expect(acquire(h.b, k, 'shared', { timeoutMs: 150 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      await w.release();
      await (await acquire(h.b, k, 'shared', opts)).release();
    });

    it('never blocks different keys', async () => {
      const l1 = await acquire(h.a, key('k1'), 'exclusive', opts);
      const l2 = await acquire(h.b, key('k2'), 'exclusive', { timeoutMs: 200 });
      await l1.release();
      await l2.release();
    });

    it('times out with LOCK_TIMEOUT within a bounded time, and the key stays usable', async () => {
      const k = key('t');
      const held = await acquire(h.a, k, 'exclusive', opts);
      const started = Date.now();
      await expect(acquire(h.b, k, 'exclusive', { timeoutMs: 200 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      expect(Date.now() - started).toBeLessThan(2000);
      await held.release();
      await (await acquire(h.b, k, 'exclusive', opts)).release();
    });

    it('gives up when the signal aborts, and leaves nothing held', async () => {
      const k = key('abort');
      const held = await acquire(h.a, k, 'exclusive', opts);
      const controller = new AbortController();
      const waiting = acquire(h.b, k, 'exclusive', { timeoutMs: 5000, signal: controller.signal });
      setTimeout(() => controller.abort(), 50);
      await expect(waiting).rejects.toMatchObject({ code: 'CLIENT_ABORTED' });
      await held.release();
      await (await acquire(h.a, k, 'exclusive', { timeoutMs: 1000 })).release();
    });

    it('releases when the guarded work throws', async () => {
      const k = key('err');
      const session = h.a.session();
      await expect(
        withLock(session, k, 'exclusive', opts, async () => {
          throw new Error('boom');
        }),
      ).rejects.toThrow('boom');
      await session.end();
      await (await acquire(h.b, k, 'exclusive', { timeoutMs: 200 })).release();
    });

    it('release is idempotent and never releases another holder', async () => {
      const k = key('idem');
      const session = h.a.session();
      const l = await session.acquire(k, 'exclusive', opts);
      await l.release();
      await l.release();
      const other = await acquire(h.b, k, 'exclusive', { timeoutMs: 200 });
      await l.release();
      await expect(acquire(h.a, k, 'exclusive', { timeoutMs: 100 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      await other.release();
      await session.end();
    });

    it('a session holds several locks at once and end() releases them all', async () => {
      const k1 = key('multi1');
      const k2 = key('multi2');
      const session = h.a.session();
      await session.acquire(k1, 'shared', opts);
      await session.acquire(k2, 'exclusive', opts);
      await expect(acquire(h.b, k2, 'shared', { timeoutMs: 100 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      await expect(acquire(h.b, k1, 'exclusive', { timeoutMs: 100 })).rejects.toMatchObject({
        code: 'LOCK_TIMEOUT',
      });
      await session.end();
      await session.end();
      await (await acquire(h.b, k1, 'exclusive', { timeoutMs: 500 })).release();
      await (await acquire(h.b, k2, 'exclusive', { timeoutMs: 500 })).release();
    });

    it('serializes a critical section across many contenders', async () => {
      const k = key('mutex');
      let inside = 0;
      let maxInside = 0;
      let counter = 0;
      await Promise.all(
        Array.from({ length: 20 }, async (_, i) => {
          const session = (i % 2 ? h.a : h.b).session();
          try {
            await withLock(session, k, 'exclusive', { timeoutMs: 10_000 }, async () => {
              inside++;
              maxInside = Math.max(maxInside, inside);
              const seen = counter;
              await sleep(2);
              counter = seen + 1;
              inside--;
            });
          } finally {
            await session.end();
          }
        }),
      );
      expect(maxInside).toBe(1);
      expect(counter).toBe(20);
    });

    it('many sessions each holding two locks never deadlock, however many there are', async () => {
      // Each "request" holds a shared lock and then takes an exclusive one, as a PUT does.
      const shared = key('blob');
      let done = 0;
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const session = (i % 2 ? h.a : h.b).session();
          try {
            await session.acquire(shared, 'shared', { timeoutMs: 10_000 });
            await withLock(
              session,
              key(`path${i % 5}`),
              'exclusive',
              { timeoutMs: 10_000 },
              async () => {
                await sleep(5);
              },
            );
            done++;
          } finally {
            await session.end();
          }
        }),
      );
      expect(done).toBe(40);
    });
  });
}
