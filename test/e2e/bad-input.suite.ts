import { createHash, randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { http, pyVersionQuery, rawHttp } from '../support/http.js';
import { type BackendProfile, startTestServer, type TestServer } from '../support/server.js';
import { eventually, snapshot, temporaryFiles } from '../support/state.js';

const V = 1234567890;
const MiB = 1024 * 1024;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const q = `?${pyVersionQuery(V)}`;

/**
 * SPEC §2 and §10 bad input: each case gets a clear 4xx, the server stays up,
 * nothing stored changes and no temporary file (or S3 multipart upload) is left behind.
 */
export function badInputSuite(profile: BackendProfile): void {
  describe(`bad input over ${profile.name}`, () => {
    let srv: TestServer;
    let before: string;
    const existing = Buffer.from('content that is already stored '.repeat(100));
    /** Stored, but no path points at it any more: the cleaner's to collect, not a client's to revive. */
    const unreferenced = Buffer.from('content whose last path was deleted '.repeat(100));

    beforeAll(async () => {
      srv = await startTestServer(profile, {
        MAX_UPLOAD_SIZE: String(MiB),
        SPILL_THRESHOLD: String(64 * 1024),
        CLIENT_IDLE_TIMEOUT: '1',
      });
      const put = await http(`${srv.url}/files/existing${q}`, { method: 'PUT', body: existing });
      expect(put.status).toBe(200);
      const gone = `${srv.url}/files/unreferenced${q}`;
      expect((await http(gone, { method: 'PUT', body: unreferenced })).status).toBe(200);
      expect((await http(gone, { method: 'DELETE' })).status).toBe(200);
    });
    afterAll(async () => {
      await srv?.close();
    });
    beforeEach(async () => {
      before = await snapshot(srv);
    });
    afterEach(async () => {
      // The server is up, nothing changed, nothing temporary is left.
      expect((await http(`${srv.url}/version`)).status).toBe(200);
      await eventually(async () => expect(await temporaryFiles(srv)).toEqual([]));
      expect(await snapshot(srv)).toBe(before);
    });

    function refused(
      res: { status: number; headers: Record<string, string>; body: Buffer },
      status: number,
      message: RegExp,
    ) {
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(/^text\/plain/);
      expect(res.headers['x-exception']).toMatch(message);
      expect(res.body.toString()).toMatch(message);
    }

    describe('paths', () => {
      it.each([
        ['empty segment', '/files/a//b'],
        ['dot segment', '/files/a/./b'],
        ['dot-dot segment', '/files/a/../b'],
        ['encoded dot-dot', '/files/a/%2e%2e/b'],
        ['NUL byte', '/files/a%00b'],
        ['control character', '/files/a%1Bb'],
        ['malformed escape', '/files/a%2'],
        ['invalid UTF-8', '/files/%C0%AF'],
        ['segment over 255 bytes', `/files/${'s'.repeat(256)}`],
        [
          'path over 1024 bytes',
          `/files/${Array.from({ length: 5 }, () => 'p'.repeat(250)).join('/')}`,
        ],
        ['empty path', '/files/'],
      ])('%s', async (_name, path) => {
        for (const method of ['PUT', 'GET', 'HEAD', 'DELETE']) {
          const res = await rawHttp(srv.url, `${path}${q}`, {
            method,
            body: method === 'PUT' ? 'x' : null,
          });
          expect(res.status, method).toBe(400);
          if (method !== 'HEAD') refused(res, 400, /Invalid path/);
        }
      });

      it('path in /list', async () => {
        refused(await rawHttp(srv.url, '/list/a/../b'), 400, /Invalid path/);
      });
    });

    describe('versions', () => {
      it('missing on PUT and DELETE', async () => {
        refused(
          await http(`${srv.url}/files/v`, { method: 'PUT', body: 'x' }),
          400,
          /Missing last_modified/,
        );
        refused(
          await http(`${srv.url}/files/existing`, { method: 'DELETE' }),
          400,
          /Missing last_modified/,
        );
      });
      it.each([
        'yesterday',
        '1234567890',
        '2009-02-13T23:31:30Z',
        'Fri, 30 Feb 2009 00:00:00 GMT',
        '',
      ])('unparsable %j', async (value) => {
        const query = `?last_modified=${encodeURIComponent(value)}`;
        refused(
          await http(`${srv.url}/files/v${query}`, { method: 'PUT', body: 'x' }),
          400,
          /Invalid last_modified/,
        );
        refused(
          await http(`${srv.url}/files/existing${query}`, { method: 'DELETE' }),
          400,
          /Invalid last_modified/,
        );
        refused(await http(`${srv.url}/list/${query}`), 400, /Invalid last_modified/);
      });
    });

    describe('lying hints', () => {
      const content = Buffer.from('what the client really sends '.repeat(50));
      const large = randomBytes(300_000);
      const cases: [string, Buffer, Record<string, string>][] = [
        [
          'gzip body, wrong checksum (new content)',
          gzipSync(content),
          { 'content-encoding': 'gzip', 'sha256-checksum': sha(Buffer.from('nope')) },
        ],
        [
          'raw body, wrong checksum (new content)',
          content,
          { 'sha256-checksum': sha(Buffer.from('nope')) },
        ],
        // The most dangerous lie: naming content that IS stored, hoping to be linked to it unread.
        [
          'gzip body, checksum of stored content',
          gzipSync(content),
          {
            'content-encoding': 'gzip',
            'sha256-checksum': sha(existing),
            'logical-size': String(existing.length),
          },
        ],
        ['raw body, checksum of stored content', content, { 'sha256-checksum': sha(existing) }],
        // Past the small-body size, so the body streams; naming unreferenced content
        // must not so much as move its zero_since (snapshot) before the body is checked.
        [
          'large gzip body, checksum of unreferenced stored content',
          gzipSync(large),
          { 'content-encoding': 'gzip', 'sha256-checksum': sha(unreferenced) },
        ],
        [
          'large raw body, checksum of unreferenced stored content',
          large,
          { 'sha256-checksum': sha(unreferenced) },
        ],
      ];
      it.each(cases)('%s', async (_name, body, headers) => {
        refused(
          await http(`${srv.url}/files/liar${q}`, { method: 'PUT', headers, body }),
          400,
          /(SHA256-Checksum|Logical-Size) mismatch/,
        );
        expect((await http(`${srv.url}/files/liar`)).status).toBe(404);
      });

      it.each([
        ['larger', content.length + 1],
        ['smaller', content.length - 1],
      ])('Logical-Size %s than the body', async (_name, size) => {
        for (const [body, enc] of [
          [gzipSync(content), { 'content-encoding': 'gzip' }],
          [content, {}],
        ] as const) {
          const headers = { ...enc, 'logical-size': String(size), 'sha256-checksum': sha(content) };
          refused(
            await http(`${srv.url}/files/liar${q}`, { method: 'PUT', headers, body }),
            400,
            /Logical-Size mismatch/,
          );
        }
      });

      it.each([
        ['SHA256-Checksum not hex', { 'sha256-checksum': 'xyz' }, /Invalid SHA256-Checksum/],
        ['Logical-Size not a number', { 'logical-size': 'big' }, /Invalid Logical-Size/],
        ['Logical-Size negative', { 'logical-size': '-5' }, /Invalid Logical-Size/],
      ])('%s', async (_name, headers, message) => {
        refused(
          await http(`${srv.url}/files/hdr${q}`, { method: 'PUT', headers, body: 'x' }),
          400,
          message,
        );
      });
    });

    describe('gzip', () => {
      it.each([
        ['plain text labelled gzip', Buffer.from('I am not gzip at all')],
        ['cut-off gzip', gzipSync(randomBytes(10_000)).subarray(0, 5000)],
        [
          'gzip with trailing garbage',
          Buffer.concat([gzipSync(Buffer.from('ok')), Buffer.from('garbage')]),
        ],
        ['empty body labelled gzip', Buffer.alloc(0)],
      ])('%s', async (_name, body) => {
        refused(
          await http(`${srv.url}/files/gz${q}`, {
            method: 'PUT',
            headers: { 'content-encoding': 'gzip' },
            body,
          }),
          400,
          /not valid gzip/,
        );
        const hinted = { 'content-encoding': 'gzip', 'sha256-checksum': sha(Buffer.from('ok')) };
        refused(
          await http(`${srv.url}/files/gz${q}`, { method: 'PUT', headers: hinted, body }),
          400,
          /not valid gzip/,
        );
      });
    });

    describe('size limits (MAX_UPLOAD_SIZE = 1 MiB)', () => {
      it('raw body with a Content-Length over the limit is refused before it is read', async () => {
        refused(
          await http(`${srv.url}/files/big${q}`, { method: 'PUT', body: Buffer.alloc(MiB + 1) }),
          413,
          /MAX_UPLOAD_SIZE/,
        );
      });
      it('chunked raw body that grows past the limit', async () => {
        const body = Readable.from(Array.from({ length: 40 }, () => randomBytes(64 * 1024)));
        refused(
          await http(`${srv.url}/files/big${q}`, { method: 'PUT', body }),
          413,
          /MAX_UPLOAD_SIZE/,
        );
      });
      it('Logical-Size over the limit', async () => {
        const headers = { 'content-encoding': 'gzip', 'logical-size': String(MiB + 1) };
        refused(
          await http(`${srv.url}/files/big${q}`, {
            method: 'PUT',
            headers,
            body: gzipSync(Buffer.alloc(10)),
          }),
          413,
          /MAX_UPLOAD_SIZE/,
        );
      });
      it('gzip bomb: small on the wire, huge inflated', async () => {
        const bomb = gzipSync(Buffer.alloc(512 * MiB), { level: 9 });
        expect(bomb.length).toBeLessThan(MiB);
        const variants: Record<string, string>[] = [
          { 'content-encoding': 'gzip' },
          { 'content-encoding': 'gzip', 'sha256-checksum': 'ab'.repeat(32) },
        ];
        for (const headers of variants) {
          refused(
            await http(`${srv.url}/files/bomb${q}`, { method: 'PUT', headers, body: bomb }),
            413,
            /MAX_UPLOAD_SIZE/,
          );
        }
      });
    });

    describe('clients that go away or stall', () => {
      /**
       * Sends the request head and part of the body, then either drops the
       * connection or goes silent; resolves with how long the server kept a
       * silent connection open.
       */
      async function cutOff(
        headers: Record<string, string>,
        partial: Buffer,
        mode: 'drop' | 'stall' = 'drop',
      ): Promise<number> {
        const url = new URL(srv.url);
        return new Promise<number>((resolve, reject) => {
          const socket = connect(Number(url.port), url.hostname, () => {
            const head = [
              `PUT /files/cut${q} HTTP/1.1`,
              `Host: ${url.host}`,
              ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
            ];
            socket.write(`${head.join('\r\n')}\r\n\r\n`);
            socket.write(partial, () => {
              const silentSince = Date.now();
              if (mode === 'drop') {
                setTimeout(() => {
                  socket.destroy();
                  resolve(0);
                }, 100);
              } else {
                socket.on('close', () => resolve(Date.now() - silentSince));
              }
            });
          });
          socket.on('error', (err) => (mode === 'stall' ? undefined : reject(err)));
          socket.resume();
        });
      }

      const content = randomBytes(512 * 1024);
      const gz = gzipSync(content);
      it.each([
        [
          'raw, no hints (spilling to a temporary file)',
          { 'content-length': String(content.length) },
          content,
        ],
        [
          'gzip, hash given, new content (streaming into the store)',
          {
            'content-length': String(gz.length),
            'content-encoding': 'gzip',
            'sha256-checksum': sha(content),
          },
          gz,
        ],
        [
          'gzip, hash of stored content (verifying only)',
          {
            'content-length': String(gz.length),
            'content-encoding': 'gzip',
            'sha256-checksum': sha(existing),
          },
          gz,
        ],
        [
          'chunked raw',
          { 'transfer-encoding': 'chunked' },
          Buffer.concat([
            Buffer.from('40000\r\n'),
            content.subarray(0, 0x40000),
            Buffer.from('\r\n'),
          ]),
        ],
      ])('disconnects mid-upload: %s', async (_name, headers, body) => {
        await cutOff(headers, body.subarray(0, Math.floor(body.length / 2)));
      });

      it('a client that stalls mid-upload is dropped after CLIENT_IDLE_TIMEOUT (1 s here)', async () => {
        const keptOpenMs = await cutOff(
          { 'content-length': String(content.length) },
          content.subarray(0, 200_000),
          'stall',
        );
        expect(keptOpenMs).toBeGreaterThanOrEqual(900);
        expect(keptOpenMs).toBeLessThan(10_000);
      });
    });

    it('wrong method', async () => {
      refused(
        await http(`${srv.url}/files/existing`, { method: 'PATCH', body: 'x' }),
        405,
        /not allowed/,
      );
      refused(await http(`${srv.url}/list/`, { method: 'POST', body: 'x' }), 405, /not allowed/);
    });
  });
}
