import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { request } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { VARIABLE_NAMES } from '../../src/config/schema.js';
import { http, pyVersionQuery } from '../support/http.js';
import { runCli, startServerProcess } from '../support/process.js';
import { RawConnection } from '../support/raw-connection.js';
import { makeTempDir } from '../support/tmp.js';

describe('s3dedup command line', () => {
  let dir: { path: string; remove(): Promise<void> };
  let env: Record<string, string>;
  beforeEach(async () => {
    dir = await makeTempDir();
    env = {
      STORAGE_PATH: join(dir.path, 'blobs'),
      SQLITE_PATH: join(dir.path, 'kv.db'),
      TEMP_DIR: join(dir.path, 'tmp'),
    };
  });
  afterEach(async () => {
    await dir.remove();
  });

  it('--help lists the commands; server --help lists its options and every variable', async () => {
    const top = await runCli(['--help']);
    expect(top.code).toBe(0);
    expect(top.output).toMatch(/server/);
    const server = await runCli(['server', '--help']);
    expect(server.code).toBe(0);
    expect(server.output).toMatch(/--config <file>/);
    expect(server.output).toMatch(/--env/);
    for (const name of VARIABLE_NAMES) expect(server.output).toContain(name);
  });

  it('exits non-zero with a message naming the variable on bad configuration', async () => {
    const bad = await runCli(['server'], { ...env, LISTEN_PORT: 'http' });
    expect(bad.code).toBe(2);
    expect(bad.output).toMatch(/LISTEN_PORT must be a whole number from 0 to 65535 \(got "http"\)/);
    const unknown = await runCli(['serve']);
    expect(unknown.code).toBe(2);
    expect(unknown.output).toMatch(/unknown command/);
    const both = await runCli(['server', '--env', '--config', 'x.json']);
    expect(both.code).toBe(2);
  });

  it('started as the s3dedup command or by plain `node`, it has gc() to pace collections with', async () => {
    // The warning a server without gc() gives (src/server.ts); plain node gets gc()
    // from src/runtime/node-flags.ts (its memory is checked in memory.test.ts).
    const warning = /no gc\(\) to pace collections/;
    const asCommand = await startServerProcess(env);
    expect(await asCommand.stop()).toBe(0);
    expect(asCommand.output()).toMatch(/"msg":"listening"/);
    expect(asCommand.output()).not.toMatch(warning);
    const plain = await startServerProcess(env, ['server'], []);
    expect(await plain.stop()).toBe(0);
    expect(plain.output()).toMatch(/"msg":"listening"/);
    expect(plain.output()).not.toMatch(warning);
  });

  it('reads --config FILE, with the environment overriding it', async () => {
    const file = join(dir.path, 'config.json');
    writeFileSync(
      file,
      JSON.stringify({ ...env, LISTEN_PORT: 1, LOG_JSON: true, BUCKET_NAME: 'from-file' }),
    );
    const server = await startServerProcess({ LISTEN_PORT: '0' }, ['server', '--config', file]);
    try {
      expect((await http(`${server.url}/version`)).status).toBe(200);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('on SIGTERM finishes the in-flight upload, refuses new connections and exits 0', async () => {
    const server = await startServerProcess(env);
    const content = Buffer.alloc(256 * 1024, 7);
    // An upload that is still sending when SIGTERM arrives.
    let sendRest: (() => void) | undefined;
    const body = Readable.from(
      (async function* () {
        yield content.subarray(0, 1024);
        await new Promise<void>((resolve) => {
          sendRest = resolve;
        });
        yield content.subarray(1024);
      })(),
    );
    const upload = request(`${server.url}/files/inflight?${pyVersionQuery(1)}`, {
      method: 'PUT',
      body,
    });
    // On a keep-alive connection, a PUT whose body is half sent.
    const kept = await RawConnection.open(server.url);
    const keptBody = Buffer.alloc(2048, 3);
    await kept.send(
      'PUT',
      `/files/kept?${pyVersionQuery(1)}`,
      { host: 'localhost', 'content-length': String(keptBody.length) },
      keptBody.subarray(0, 1024),
    );
    while (!sendRest) await sleep(10);
    await sleep(100);
    const exited = server.stop('SIGTERM');
    await sleep(200);
    await expect(http(`${server.url}/version`)).rejects.toThrow();
    // The rest of that body with a request pipelined behind it: the PUT in
    // flight is finished, the new request refused in the server's error
    // format (not Fastify's JSON) and the connection closed.
    await kept.sendRaw(
      Buffer.concat([
        keptBody.subarray(1024),
        Buffer.from('GET /version HTTP/1.1\r\nhost: localhost\r\n\r\n'),
      ]),
    );
    expect((await kept.read()).status).toBe(200);
    const late = await kept.read();
    expect(late.status).toBe(503);
    expect(late.headers['content-type']).toMatch(/^text\/plain/);
    expect(late.headers['x-exception']).toMatch(/shutting down/);
    expect(late.headers.connection).toBe('close');
    kept.close();
    sendRest();
    const res = await upload;
    expect(res.statusCode).toBe(200);
    await res.body.dump();
    expect(await exited).toBe(0);
    expect(server.output()).toMatch(/shutting down/);
  });
});

describe('s3dedup server with PostgreSQL', () => {
  it('warns that LOCKS_TYPE=memory is for one instance when the metadata is in PostgreSQL', async () => {
    const { createTestDatabase } = await import('../support/postgres.js');
    const dir = await makeTempDir();
    const server = await startServerProcess({
      KVSTORAGE_TYPE: 'postgres',
      LOCKS_TYPE: 'memory',
      DATABASE_URL: await createTestDatabase(),
      STORAGE_PATH: join(dir.path, 'blobs'),
      TEMP_DIR: join(dir.path, 'tmp'),
    });
    try {
      expect(server.output()).toMatch(
        /several instances sharing the database need LOCKS_TYPE=postgres/,
      );
      expect((await http(`${server.url}/version`)).status).toBe(200);
    } finally {
      await server.stop();
      await dir.remove();
    }
  });

  it('refuses to start when PostgreSQL stays unreachable, naming it', async () => {
    const dir = await makeTempDir();
    try {
      const { code, output } = await runCli(['server'], {
        KVSTORAGE_TYPE: 'postgres',
        DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none',
        POSTGRES_CONNECT_TIMEOUT: '0.2',
        STARTUP_TIMEOUT: '1',
        STORAGE_PATH: join(dir.path, 'blobs'),
        TEMP_DIR: join(dir.path, 'tmp'),
        LISTEN_PORT: '0',
        LOG_JSON: 'true',
      });
      expect(code).toBe(1);
      expect(output).toMatch(/database unavailable/);
    } finally {
      await dir.remove();
    }
  }, 60_000);
});
