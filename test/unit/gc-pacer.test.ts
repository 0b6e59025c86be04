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

  it('does nothing when the process has no gc function (started without --expose-gc)', () => {
    const pacer = new GcPacer({ collect: undefined, externalBytes: () => 0 });
    pacer.track(new EventEmitter());
    expect(pacer.enabled).toBe(false);
    expect(pacer.watching).toBe(false);
  });
});
