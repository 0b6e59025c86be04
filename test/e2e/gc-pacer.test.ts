import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../../src/app.js';
import { type Backends, openBackends } from '../../src/backends.js';
import { loadConfig } from '../../src/config/load.js';
import { GcPacer } from '../../src/runtime/gc-pacer.js';
import { createService } from '../../src/server.js';
import { http, pyVersionQuery } from '../support/http.js';
import { eventually } from '../support/state.js';
import { makeTempDir } from '../support/tmp.js';

const MiB = 1024 * 1024;

/**
 * The pacer wired into a real HTTP server: Vitest runs without --expose-gc,
 * so `collect` is a spy over V8's real external-memory figure.
 */
describe('GC pacer in the HTTP server', () => {
  let dir: { path: string; remove(): Promise<void> };
  let backends: Backends;
  let app: FastifyInstance;
  let url: string;
  const collect = vi.fn();
  const pacer = new GcPacer({ collect, stepBytes: MiB });
  const file = randomBytes(16 * MiB);

  beforeAll(async () => {
    dir = await makeTempDir();
    const config = loadConfig({
      env: {
        STORAGE_PATH: join(dir.path, 'blobs'),
        SQLITE_PATH: join(dir.path, 'kv.db'),
        TEMP_DIR: join(dir.path, 'tmp'),
        CLEANER_ENABLED: 'false',
      },
    });
    const logger = pino({ level: 'silent' });
    backends = await openBackends(config, logger);
    app = buildApp({
      service: createService(config, backends, logger),
      meta: backends.meta,
      blobs: backends.blobs,
      logger,
      clientIdleTimeoutSeconds: 120,
      gcPacer: pacer,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const put = await http(`${url}/files/big.bin?${pyVersionQuery(1)}`, {
      method: 'PUT',
      body: file,
    });
    expect(put.status).toBe(200);
  });
  afterAll(async () => {
    pacer.stop();
    await app?.close();
    await backends?.close();
    await dir?.remove();
  });

  it('collects while a large body streams, and stops looking once the server is idle', async () => {
    collect.mockClear();
    const got = await http(`${url}/files/big.bin`, { headers: { 'accept-encoding': 'identity' } });
    expect(got.status).toBe(200);
    expect(got.body.equals(file)).toBe(true);
    expect(collect.mock.calls.length).toBeGreaterThan(0);
    await eventually(async () => expect(pacer.watching).toBe(false), 1000);
  });

  it('a pipelined request queued when its connection drops does not keep the timer running', async () => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await new Promise<void>((resolve) => socket.once('connect', resolve));
    // Two GETs in one write: the second waits behind the first's 16 MiB answer.
    const get = 'GET /files/big.bin HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n\r\n';
    socket.write(get + get);
    await new Promise<void>((resolve) => socket.once('data', () => resolve()));
    expect(pacer.watching).toBe(true);
    socket.destroy();
    await eventually(async () => expect(pacer.watching).toBe(false), 1000);
  });
});
