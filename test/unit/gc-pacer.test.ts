import { EventEmitter } from 'node:events';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { GcPacer } from '../../src/runtime/gc-pacer.js';

const MiB = 1024 * 1024;

/** A pacer over a simulated external-memory level, ticking every 5 ms of fake time. */
function pacerOver(start = 10 * MiB) {
  /** `level` as V8 accounts it; `live` is what is still in use, all a collection leaves. */
  const memory = { level: start, live: start };
  const collect = vi.fn(() => {
    memory.level = memory.live;
  });
  const pacer = new GcPacer({
    collect,
    externalBytes: () => memory.level,
    stepBytes: 4 * MiB,
    intervalMs: 5,
  });
  return { pacer, collect, memory };
}

describe('GcPacer', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('collects each time external memory has grown by the step while a request is in flight', () => {
    const { pacer, collect, memory } = pacerOver();
    const response = new EventEmitter();
    pacer.track(response);
    // 1 MiB of dead buffers per tick: 12 MiB over 12 ticks is three steps of 4 MiB.
    for (let i = 0; i < 12; i++) {
      memory.level += MiB;
      vi.advanceTimersByTime(5);
    }
    expect(collect).toHaveBeenCalledTimes(3);
    expect(pacer.collections).toBe(3);
    response.emit('close');
  });

  it('does not collect while the level stays below the step', () => {
    const { pacer, collect, memory } = pacerOver();
    pacer.track(new EventEmitter());
    memory.level += 4 * MiB - 1;
    vi.advanceTimersByTime(50);
    expect(collect).not.toHaveBeenCalled();
  });

  it('measures growth from the lowest level seen, so memory freed by V8 itself resets the count', () => {
    const { pacer, collect, memory } = pacerOver(20 * MiB);
    pacer.track(new EventEmitter());
    memory.level = 23 * MiB; // 3 MiB over the start

    vi.advanceTimersByTime(5);
    memory.level = 12 * MiB; // V8 collected on its own
    vi.advanceTimersByTime(5);
    memory.level = 15 * MiB; // 3 MiB over the new floor: not yet
    vi.advanceTimersByTime(5);
    expect(collect).not.toHaveBeenCalled();
    memory.level = 16 * MiB; // 4 MiB over it
    vi.advanceTimersByTime(5);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('buffers still in use (a new upload) trigger one collection, not one per tick', () => {
    const { pacer, collect, memory } = pacerOver();
    pacer.track(new EventEmitter());
    // An upload takes 24 MiB of part buffers it keeps using.
    memory.live += 24 * MiB;
    memory.level = memory.live;
    vi.advanceTimersByTime(100);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it('stops looking once no request is in flight, and starts again with the next one', () => {
    const { pacer, memory, collect } = pacerOver();
    const first = new EventEmitter();
    const second = new EventEmitter();
    pacer.track(first);
    pacer.track(second);
    expect(pacer.watching).toBe(true);
    first.emit('close');
    vi.advanceTimersByTime(5);
    expect(pacer.watching).toBe(true);
    second.emit('close');
    vi.advanceTimersByTime(5);
    expect(pacer.watching).toBe(false);
    // Growth while idle is left to V8.
    memory.level += 100 * MiB;
    vi.advanceTimersByTime(100);
    expect(collect).not.toHaveBeenCalled();
    pacer.track(new EventEmitter());
    expect(pacer.watching).toBe(true);
  });

  it('a response that never closes (queued behind a pipelined request when the connection dropped) is counted down by its connection', () => {
    const { pacer } = pacerOver();
    const connection = new EventEmitter();
    const active = new EventEmitter();
    const queued = new EventEmitter();
    pacer.track(active, connection);
    pacer.track(queued, connection);
    active.emit('close');
    connection.emit('close');
    vi.advanceTimersByTime(5);
    expect(pacer.watching).toBe(false);
    // Each request was counted down once: one new request keeps the timer
    // running until it closes, and only until then.
    const next = new EventEmitter();
    pacer.track(next, new EventEmitter());
    vi.advanceTimersByTime(50);
    expect(pacer.watching).toBe(true);
    next.emit('close');
    vi.advanceTimersByTime(5);
    expect(pacer.watching).toBe(false);
    expect(connection.listenerCount('close')).toBe(0);
  });

  /**
   * A level with promoted buffers too: those survive minor collections, and
   * only a full one frees them (S3 part buffers that lived through a few).
   */
  function pacerWithPromotion(start = 10 * MiB) {
    const memory = { level: start, live: start, promoted: 0 };
    const minor = vi.fn(() => {
      memory.level = memory.live + memory.promoted;
    });
    const major = vi.fn(() => {
      memory.promoted = 0;
      memory.level = memory.live;
    });
    const pacer = new GcPacer({
      collect: minor,
      collectMajor: major,
      externalBytes: () => memory.level,
      stepBytes: 4 * MiB,
      majorStepBytes: 32 * MiB,
      majorIntervalMs: 50,
      intervalMs: 5,
      now: () => Date.now(), // faked with the timers
    });
    /** One upload: 24 MiB of part buffers in use for a while, then dropped after promotion. */
    const upload = () => {
      memory.live += 24 * MiB;
      memory.level += 24 * MiB;
      vi.advanceTimersByTime(5);
      memory.live -= 24 * MiB;
      memory.promoted += 24 * MiB;
      vi.advanceTimersByTime(100);
    };
    return { pacer, minor, major, memory, upload };
  }

  it('runs a full collection once dropped promoted buffers pile up past the step, and counts from what it left', () => {
    const { pacer, major, memory, upload } = pacerWithPromotion();
    pacer.track(new EventEmitter());
    upload();
    expect(major).not.toHaveBeenCalled(); // 24 MiB in use: below the 32 MiB step
    upload(); // 24 MiB dead and promoted + 24 MiB in use
    expect(major).toHaveBeenCalledTimes(1);
    expect(memory.level).toBe(10 * MiB + 24 * MiB); // only what is in use is left
    expect(pacer.majorCollections).toBe(1);
    upload();
    expect(major).toHaveBeenCalledTimes(1); // 24 MiB over what the full collection left
    upload();
    expect(major).toHaveBeenCalledTimes(2);
    // Every collection is counted: one minor one per upload, and the two full ones.
    expect(pacer.majorCollections).toBe(2);
    expect(pacer.collections).toBe(6);
  });

  it('runs full collections at most once per interval, however fast buffers pile up', () => {
    const { pacer, major, memory } = pacerWithPromotion();
    pacer.track(new EventEmitter());
    // 40 MiB promoted and dropped every 5 ms tick for 100 ms.
    for (let i = 0; i < 20; i++) {
      memory.promoted += 40 * MiB;
      memory.level += 40 * MiB;
      vi.advanceTimersByTime(5);
    }
    expect(major).toHaveBeenCalledTimes(2); // at 0 and 50 ms
  });

  it('never runs a full collection without a minor one to run (no gc function)', () => {
    const major = vi.fn();
    const pacer = new GcPacer({ collect: undefined, collectMajor: major, externalBytes: () => 0 });
    pacer.track(new EventEmitter());
    expect(pacer.watching).toBe(false);
    expect(major).not.toHaveBeenCalled();
  });

  it('buffers kept in use raise the full-collection level once, not one full collection per step', () => {
    const { pacer, major, memory } = pacerWithPromotion();
    pacer.track(new EventEmitter());
    memory.live += 40 * MiB; // a busy instance's part buffers, all in use
    memory.level = memory.live;
    vi.advanceTimersByTime(5);
    expect(major).toHaveBeenCalledTimes(1);
    // Streaming garbage on top: minor collections only.
    for (let i = 0; i < 20; i++) {
      memory.level += MiB;
      vi.advanceTimersByTime(5);
    }
    expect(major).toHaveBeenCalledTimes(1);
  });

  it('does nothing when the process has no gc function (started without --expose-gc)', () => {
    const pacer = new GcPacer({ collect: undefined, externalBytes: () => 0 });
    pacer.track(new EventEmitter());
    expect(pacer.enabled).toBe(false);
    expect(pacer.watching).toBe(false);
  });
});
