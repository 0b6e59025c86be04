import { clientAborted, lockTimeout } from '../errors.js';
import type { Lock, LockManager, LockMode, LockOptions, LockSession } from './port.js';

interface Waiter {
  mode: LockMode;
  grant: () => void;
}

interface KeyState {
  readers: number;
  writer: boolean;
  /** FIFO: a request is granted only when it is first in line, so a writer is never starved by a stream of readers. */
  queue: Waiter[];
}

/** Reader/writer locks for one process (LOCKS_TYPE=memory). */
export class MemoryLockManager implements LockManager {
  private readonly keys = new Map<string, KeyState>();

  session(): LockSession {
    const held = new Set<Lock>();
    return {
      acquire: async (key, mode, options) => {
        const lock = await this.acquire(key, mode, options);
        const tracked: Lock = {
          release: async () => {
            held.delete(tracked);
            await lock.release();
          },
        };
        held.add(tracked);
        return tracked;
      },
      end: async () => {
        for (const lock of [...held]) await lock.release();
      },
    };
  }

  acquire(key: string, mode: LockMode, options: LockOptions): Promise<Lock> {
    if (options.signal?.aborted) return Promise.reject(clientAborted());
    let state = this.keys.get(key);
    if (!state) {
      state = { readers: 0, writer: false, queue: [] };
      this.keys.set(key, state);
    }
    const s = state;
    if (s.queue.length === 0 && compatible(s, mode)) {
      take(s, mode);
      return Promise.resolve(this.handle(key, s, mode));
    }

    return new Promise<Lock>((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
      };
      const waiter: Waiter = {
        mode,
        grant: () => {
          cleanup();
          take(s, mode);
          resolve(this.handle(key, s, mode));
        },
      };
      const giveUp = (error: Error) => {
        cleanup();
        const i = s.queue.indexOf(waiter);
        if (i >= 0) s.queue.splice(i, 1);
        // Leaving the queue may unblock the waiters that stood behind us.
        this.wake(key, s);
        reject(error);
      };
      const timer = setTimeout(
        () => giveUp(lockTimeout(key, options.timeoutMs)),
        options.timeoutMs,
      );
      const onAbort = () => giveUp(clientAborted());
      options.signal?.addEventListener('abort', onAbort, { once: true });
      s.queue.push(waiter);
    });
  }

  private handle(key: string, s: KeyState, mode: LockMode): Lock {
    let released = false;
    return {
      release: async () => {
        if (released) return;
        released = true;
        if (mode === 'exclusive') s.writer = false;
        else s.readers -= 1;
        this.wake(key, s);
      },
    };
  }

  private wake(key: string, s: KeyState): void {
    while (s.queue.length > 0) {
      const next = s.queue[0];
      if (!next || !compatible(s, next.mode)) break;
      s.queue.shift();
      next.grant();
    }
    if (s.readers === 0 && !s.writer && s.queue.length === 0) this.keys.delete(key);
  }

  /** Number of keys with holders or waiters (tests check nothing leaks). */
  get activeKeys(): number {
    return this.keys.size;
  }

  async close(): Promise<void> {}
}

function compatible(s: KeyState, mode: LockMode): boolean {
  return mode === 'shared' ? !s.writer : !s.writer && s.readers === 0;
}

function take(s: KeyState, mode: LockMode): void {
  if (mode === 'exclusive') s.writer = true;
  else s.readers += 1;
}
