import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpillBuffer } from '../../src/dedup/spill.js';
import { filesIn, makeTempDir } from '../support/tmp.js';

async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe('SpillBuffer', () => {
  let dir: { path: string; remove(): Promise<void> };
  beforeEach(async () => {
    dir = await makeTempDir();
  });
  afterEach(async () => {
    await dir.remove();
  });

  it('keeps a small body in memory and replays it', async () => {
    const data = randomBytes(1000);
    const spill = new SpillBuffer(dir.path, 4096);
    await pipeline(Readable.from([data]), spill);
    expect(spill.spilled).toBe(false);
    expect(await filesIn(dir.path)).toEqual([]);
    expect((await readAll(spill.openReader())).equals(data)).toBe(true);
    expect((await readAll(spill.openReader())).equals(data)).toBe(true);
    await spill.dispose();
  });

  it('moves to a temporary file past the threshold and removes it on dispose', async () => {
    const data = randomBytes(300_000);
    const spill = new SpillBuffer(dir.path, 100_000);
    await pipeline(
      Readable.from([
        data.subarray(0, 50_000),
        data.subarray(50_000, 150_000),
        data.subarray(150_000),
      ]),
      spill,
    );
    expect(spill.spilled).toBe(true);
    expect(spill.size).toBe(data.length);
    expect(await filesIn(dir.path)).toHaveLength(1);
    expect((await readAll(spill.openReader())).equals(data)).toBe(true);
    expect((await readAll(spill.openReader())).equals(data)).toBe(true);
    await spill.dispose();
    expect(await filesIn(dir.path)).toEqual([]);
  });

  it('removes its file when the upload is cut off midway', async () => {
    const spill = new SpillBuffer(dir.path, 10);
    const body = new Readable({ read() {} });
    body.push(randomBytes(50_000));
    setTimeout(() => body.destroy(new Error('client went away')), 20);
    await expect(pipeline(body, spill)).rejects.toThrow('client went away');
    await spill.dispose();
    expect(await filesIn(dir.path)).toEqual([]);
  });

  it('refuses to be read before it is finished', () => {
    const spill = new SpillBuffer(dir.path, 10);
    expect(() => spill.openReader()).toThrow(/before it was finished/);
  });
});
