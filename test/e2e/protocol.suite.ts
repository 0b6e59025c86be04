import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatVersion } from '../../src/protocol/versions.js';
import {
  digestOf,
  http,
  pyClient,
  pyParseLastModified,
  pyQuote,
  pyVersionQuery,
  rawHttp,
} from '../support/http.js';
import { type BackendProfile, startTestServer, type TestServer } from '../support/server.js';

const V = 1234567890; // Fri, 13 Feb 2009 23:31:30 -0000
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const q = (version: number) => `?${pyVersionQuery(version)}`;

function expectError(
  res: { status: number; headers: Record<string, string>; body: Buffer },
  status: number,
  message?: RegExp,
) {
  expect(res.status).toBe(status);
  expect(res.headers['content-type']).toMatch(/^text\/plain/);
  const text = res.body.toString();
  expect(text.length).toBeGreaterThan(0);
  expect(text).not.toContain('\n');
  expect(res.headers['x-exception']).toBe(text);
  if (message) expect(text).toMatch(message);
}

/**
 * Every row of SPEC §2 over a real listening server, at the root and under /ft.
 * Runs once per backend profile (filesystem now, S3 later).
 */
export function protocolSuite(profile: BackendProfile): void {
  describe(`Filetracker protocol over ${profile.name}`, () => {
    let srv: TestServer;
    beforeAll(async () => {
      srv = await startTestServer(profile);
    });
    afterAll(async () => {
      await srv?.close();
    });

    describe.each([
      ['root', ''],
      ['/ft', '/ft'],
    ])('at %s', (label, prefix) => {
      const base = () => srv.url + prefix;
      const dir = `proto-${label === 'root' ? 'root' : 'ft'}`;

      it('GET /version, with and without the trailing slash', async () => {
        for (const path of ['/version', '/version/']) {
          const res = await http(base() + path);
          expect(res.status).toBe(200);
          expect(res.headers['content-type']).toMatch(/^application\/json/);
          expect(JSON.parse(res.body.toString())).toEqual({ protocol_versions: [2] });
        }
      });

      it('PUT like the Python client (gzip -9, SHA256-Checksum, Logical-Size) and GET the same bytes back', async () => {
        const name = `/${dir}/py/solution.cpp`;
        const content = Buffer.from('#include <cstdio>\nint main() { puts("hi"); }\n'.repeat(50));
        const put = await pyClient.put(base(), name, content, V);
        expect(put.status).toBe(200);
        expect(put.headers['content-type']).toMatch(/^text\/plain/);
        expect(put.headers['last-modified']).toBe('Fri, 13 Feb 2009 23:31:30 -0000');
        expect(pyParseLastModified(put.headers['last-modified'])).toBe(V);
        expect(put.body.length).toBe(0);

        const got = await pyClient.get(base(), name);
        expect(got.status).toBe(200);
        expect(got.headers['content-type']).toBe('application/octet-stream');
        expect(got.headers['content-encoding']).toBe('gzip');
        // The client's own gzip bytes are stored and served as they are.
        expect(got.body).toEqual(gzipSync(content, { level: 9 }));
        expect(got.headers['content-length']).toBe(String(got.body.length));
        expect(got.headers['logical-size']).toBe(String(content.length));
        expect(got.headers['last-modified']).toBe(formatVersion(V));
        expect(got.content).toEqual(content);
      });

      it('HEAD answers the same status and headers as GET, without a body', async () => {
        const name = `/${dir}/head/file.txt`;
        const content = randomBytes(5000);
        await pyClient.put(base(), name, content, V);
        const get = await http(pyClient.url(base(), name));
        const head = await pyClient.head(base(), name);
        expect(head.status).toBe(200);
        expect(head.body.length).toBe(0);
        for (const h of [
          'content-type',
          'content-encoding',
          'content-length',
          'last-modified',
          'logical-size',
        ]) {
          expect(head.headers[h], h).toBe(get.headers[h]);
        }
        const missing = await pyClient.head(base(), `/${dir}/head/missing`);
        expect(missing.status).toBe(404);
      });

      it('stores a raw upload gzip-compressed (compress_hint=False shape) and serves it as gzip', async () => {
        const name = `/${dir}/raw/data.bin`;
        const content = Buffer.from('raw bytes '.repeat(1000));
        const put = await pyClient.put(base(), name, content, V, false);
        expect(put.status).toBe(200);
        const got = await pyClient.get(base(), name);
        expect(got.headers['content-encoding']).toBe('gzip');
        expect(got.headers['logical-size']).toBe(String(content.length));
        expect(Number(got.headers['content-length'])).toBeLessThan(content.length);
        expect(gunzipSync(got.body)).toEqual(content);
      });

      it('accepts a chunked upload without Content-Length or hints', async () => {
        const content = randomBytes(300_000);
        const body = Readable.from([content.subarray(0, 100_000), content.subarray(100_000)]);
        const put = await http(`${base()}/files/${dir}/chunked${q(V)}`, { method: 'PUT', body });
        expect(put.status).toBe(200);
        const got = await http(`${base()}/files/${dir}/chunked`, {
          headers: { 'accept-encoding': 'identity' },
        });
        expect(digestOf(got.body)).toBe(digestOf(content));
      });

      it('accepts a chunked gzip upload', async () => {
        const content = Buffer.from('chunked gzip '.repeat(5000));
        const gz = gzipSync(content);
        const body = Readable.from([gz.subarray(0, 100), gz.subarray(100)]);
        const put = await http(`${base()}/files/${dir}/chunked-gz${q(V)}`, {
          method: 'PUT',
          headers: { 'content-encoding': 'GZIP', 'sha256-checksum': sha256(content) },
          body,
        });
        expect(put.status).toBe(200);
        const got = await http(`${base()}/files/${dir}/chunked-gz`);
        expect(got.body).toEqual(gz);
      });

      it('serves decompressed bytes when the client refuses gzip', async () => {
        const name = `${dir}/identity.txt`;
        const content = Buffer.from('plain please '.repeat(300));
        await http(`${base()}/files/${name}${q(V)}`, { method: 'PUT', body: content });
        for (const accept of ['identity', 'gzip;q=0', 'gzip;q=0, identity;q=1']) {
          const got = await http(`${base()}/files/${name}`, {
            headers: { 'accept-encoding': accept },
          });
          expect(got.status).toBe(200);
          expect(got.headers['content-encoding']).toBeUndefined();
          expect(got.headers['content-length']).toBe(String(content.length));
          expect(got.headers['logical-size']).toBe(String(content.length));
          expect(got.body).toEqual(content);
          const head = await http(`${base()}/files/${name}`, {
            method: 'HEAD',
            headers: { 'accept-encoding': accept },
          });
          expect(head.headers['content-length']).toBe(String(content.length));
          expect(head.headers['content-encoding']).toBeUndefined();
        }
        const gz = await http(`${base()}/files/${name}`, {
          headers: { 'accept-encoding': 'gzip' },
        });
        expect(gz.headers['content-encoding']).toBe('gzip');
      });

      it('stores an empty file', async () => {
        const name = `/${dir}/empty`;
        expect((await pyClient.put(base(), name, Buffer.alloc(0), V)).status).toBe(200);
        const got = await pyClient.get(base(), name);
        expect(got.headers['logical-size']).toBe('0');
        expect(got.content.length).toBe(0);
        expect(
          (await http(`${base()}/files${name}${q(V)}`, { method: 'PUT', body: '' })).status,
        ).toBe(200);
        const plain = await http(`${base()}/files${name}`, {
          headers: { 'accept-encoding': 'identity' },
        });
        expect(plain.headers['content-length']).toBe('0');
      });

      it('GET of a missing file is 404 with a text/plain message and X-Exception', async () => {
        expectError(await http(`${base()}/files/${dir}/nothing/here`), 404, /not found/);
      });

      it('keeps a newer stored version: an older PUT answers 200 with the stored version', async () => {
        const name = `/${dir}/versions/older`;
        await pyClient.put(base(), name, Buffer.from('new'), V);
        const old = await pyClient.put(base(), name, Buffer.from('old'), V - 1);
        expect(old.status).toBe(200);
        expect(old.headers['last-modified']).toBe(formatVersion(V));
        expect((await pyClient.get(base(), name)).content.toString()).toBe('new');
      });

      it('an equal version overwrites, a newer one too', async () => {
        const name = `/${dir}/versions/equal`;
        await pyClient.put(base(), name, Buffer.from('one'), V);
        const same = await pyClient.put(base(), name, Buffer.from('two'), V);
        expect(same.headers['last-modified']).toBe(formatVersion(V));
        expect((await pyClient.get(base(), name)).content.toString()).toBe('two');
        const newer = await pyClient.put(base(), name, Buffer.from('three'), V + 60);
        expect(newer.headers['last-modified']).toBe(formatVersion(V + 60));
        const got = await pyClient.get(base(), name);
        expect(got.content.toString()).toBe('three');
        expect(got.headers['last-modified']).toBe(formatVersion(V + 60));
      });

      it('takes the version from a Last-Modified header; the query parameter wins over it', async () => {
        const name = `${dir}/versions/header`;
        const viaHeader = await http(`${base()}/files/${name}`, {
          method: 'PUT',
          headers: { 'last-modified': 'Sat, 14 Feb 2009 00:31:30 +0100' },
          body: 'h',
        });
        expect(viaHeader.headers['last-modified']).toBe(formatVersion(V));
        const both = await http(`${base()}/files/${name}${q(V + 5)}`, {
          method: 'PUT',
          headers: { 'last-modified': formatVersion(V + 999) },
          body: 'q',
        });
        expect(both.headers['last-modified']).toBe(formatVersion(V + 5));
      });

      it('accepts pre-1970 versions', async () => {
        const name = `/${dir}/versions/ancient`;
        const put = await pyClient.put(base(), name, Buffer.from('old times'), -86400 * 365);
        expect(put.headers['last-modified']).toBe('Wed, 01 Jan 1969 00:00:00 -0000');
        expect((await pyClient.head(base(), name)).headers['last-modified']).toBe(
          'Wed, 01 Jan 1969 00:00:00 -0000',
        );
      });

      it('PUT and DELETE without last_modified, or with an unparsable one, are 400', async () => {
        const url = `${base()}/files/${dir}/versions/bad`;
        expectError(await http(url, { method: 'PUT', body: 'x' }), 400, /Missing last_modified/);
        expectError(
          await http(`${url}?last_modified=yesterday`, { method: 'PUT', body: 'x' }),
          400,
          /Invalid last_modified/,
        );
        expectError(await http(url, { method: 'DELETE' }), 400, /Missing last_modified/);
        expectError(
          await http(`${url}?last_modified=13-02-2009`, { method: 'DELETE' }),
          400,
          /Invalid last_modified/,
        );
        expect((await http(url)).status).toBe(404);
      });

      it('DELETE: 404 if absent, a no-op 200 if the stored version is newer, else deletes', async () => {
        const name = `/${dir}/del/file`;
        expectError(await pyClient.delete(base(), name, V), 404);
        await pyClient.put(base(), name, Buffer.from('x'), V);
        const older = await pyClient.delete(base(), name, V - 1);
        expect(older.status).toBe(200);
        expect((await pyClient.get(base(), name)).status).toBe(200);
        const del = await pyClient.delete(base(), name, V);
        expect(del.status).toBe(200);
        expect(del.body.length).toBe(0);
        expect((await pyClient.get(base(), name)).status).toBe(404);
        // Newer than stored deletes too.
        await pyClient.put(base(), name, Buffer.from('x'), V);
        expect((await pyClient.delete(base(), name, V + 1)).status).toBe(200);
        expect((await pyClient.head(base(), name)).status).toBe(404);
      });

      it('lists a directory: relative, recursive, sorted, one path per line, inclusive cutoff', async () => {
        const d = `${dir}/list`;
        const files: [string, number][] = [
          ['b.txt', V],
          ['a.txt', V + 1],
          ['sub/c.txt', V + 2],
          ['sub/deeper/d.txt', V + 3],
          ['żółw.txt', V + 4],
        ];
        for (const [f, v] of files)
          await http(`${base()}/files/${d}/${pyQuote(f)}${q(v)}`, { method: 'PUT', body: f });
        await http(`${base()}/files/${dir}/listing-neighbour${q(V)}`, { method: 'PUT', body: 'x' });
        await http(`${base()}/files/${dir}/li/x${q(V)}`, { method: 'PUT', body: 'x' });

        const all = await http(`${base()}/list/${d}${q(V + 100)}`);
        expect(all.status).toBe(200);
        expect(all.headers['content-type']).toMatch(/^text\/plain/);
        expect(all.body.toString()).toBe('a.txt\nb.txt\nsub/c.txt\nsub/deeper/d.txt\nżółw.txt\n');

        // Inclusive: a file whose version equals the cutoff is listed.
        expect((await http(`${base()}/list/${d}${q(V + 2)}`)).body.toString()).toBe(
          'a.txt\nb.txt\nsub/c.txt\n',
        );
        expect((await http(`${base()}/list/${d}/sub${q(V + 100)}`)).body.toString()).toBe(
          'c.txt\ndeeper/d.txt\n',
        );

        // dir, /dir and dir/ are the same directory.
        for (const form of [`/list/${d}/`, `/list//${d}`, `/list/${d}//`]) {
          expect((await http(`${base()}${form}${q(V + 100)}`)).body.toString(), form).toBe(
            all.body.toString(),
          );
        }
        // A prefix of a directory name is not that directory.
        expect((await http(`${base()}/list/${dir}/li${q(V + 100)}`)).body.toString()).toBe('x\n');
      });

      it('lists with the current time as cutoff when last_modified is absent', async () => {
        const d = `${dir}/list-now`;
        const now = Math.floor(Date.now() / 1000);
        await http(`${base()}/files/${d}/past${q(now - 10)}`, { method: 'PUT', body: 'x' });
        await http(`${base()}/files/${d}/future${q(now + 3600)}`, { method: 'PUT', body: 'x' });
        expect((await http(`${base()}/list/${d}`)).body.toString()).toBe('past\n');
      });

      it('lists an unknown directory as an empty 200', async () => {
        const res = await http(`${base()}/list/${dir}/no/such/dir${q(V)}`);
        expect(res.status).toBe(200);
        expect(res.body.length).toBe(0);
      });

      it('lists the root with full paths', async () => {
        const res = await http(`${base()}/list/${q(V + 100)}`);
        const lines = res.body.toString().split('\n');
        expect(lines.pop()).toBe('');
        expect(lines).toContain(`${dir}/list/sub/c.txt`);
        expect([...lines].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))).toEqual(
          lines,
        );
        expect((await http(`${base()}/list${q(V + 100)}`)).body).toEqual(res.body);
      });

      it('decodes percent-encoded names, treats them case-sensitively, and ignores a trailing slash', async () => {
        const name = `/${dir}/names/Zadanie 1/wejście (1)+!.in`;
        await pyClient.put(base(), name, Buffer.from('input'), V);
        expect((await pyClient.get(base(), name)).content.toString()).toBe('input');
        expect((await http(`${pyClient.url(base(), name)}/`)).status).toBe(200);
        expect((await pyClient.get(base(), name.toLowerCase())).status).toBe(404);
        const listing = await http(`${base()}/list/${dir}/names${q(V)}`);
        expect(listing.body.toString()).toBe('Zadanie 1/wejście (1)+!.in\n');
        expect((await http(`${base()}/list/${dir}/NAMES${q(V)}`)).body.length).toBe(0);
      });

      it('refuses invalid paths with 400 and stores nothing', async () => {
        for (const bad of ['a//b', 'a/../b', 'a/./b', 'a/%2E%2E/b', 'bad%zz', 'nul%00byte']) {
          const path = `${prefix}/files/${dir}/${bad}${q(V)}`;
          expectError(
            await rawHttp(srv.url, path, { method: 'PUT', body: 'x' }),
            400,
            /Invalid path/,
          );
        }
        expect((await http(`${base()}/list/${dir}/a${q(V)}`)).body.length).toBe(0);
        expectError(
          await http(`${base()}/files/${'x'.repeat(1025)}${q(V)}`, { method: 'PUT', body: 'x' }),
          400,
          /1024/,
        );
      });

      it('answers 405 with Allow for a wrong method, and 404 for an unknown route', async () => {
        const post = await http(`${base()}/files/${dir}/x${q(V)}`, { method: 'POST', body: 'x' });
        expectError(post, 405, /POST/);
        expect(post.headers.allow).toBe('GET, HEAD, PUT, DELETE');
        const putList = await http(`${base()}/list/${dir}`, { method: 'PUT', body: 'x' });
        expectError(putList, 405);
        expect(putList.headers.allow).toBe('GET');
        expectError(await http(`${base()}/version`, { method: 'DELETE' }), 405);
        expectError(await http(`${base()}/nonsense`), 404);
      });
    });

    it('serves the same files at the root and under /ft', async () => {
      const name = '/shared/both-prefixes.txt';
      await pyClient.put(srv.url, name, Buffer.from('root'), V);
      expect((await pyClient.get(`${srv.url}/ft`, name)).content.toString()).toBe('root');
      await pyClient.put(`${srv.url}/ft`, name, Buffer.from('ft'), V + 1);
      expect((await pyClient.get(srv.url, name)).content.toString()).toBe('ft');
    });
  });
}
