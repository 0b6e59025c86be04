import { createHash, randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { DRAIN_LIMIT, LINGER_IDLE_MS } from '../../src/protocol/body.js';
import { http, pyVersionQuery } from '../support/http.js';
import { runProcess } from '../support/process.js';
import { RawConnection } from '../support/raw-connection.js';
import { type BackendProfile, startTestServer, type TestServer } from '../support/server.js';
import { eventually, snapshot, temporaryFiles } from '../support/state.js';

const STORED = 2_000_000_000;
const OLDER = 1_000_000_000;
const MB = 1_000_000;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * SPEC §2 "Early answers" (issue #9): whenever the server answers before it
 * has read a PUT's whole body, the client still gets the answer, and on a
 * keep-alive connection its next request is answered at once. Every request
 * here is sent the way Python's http.client sends it: head and whole body
 * first, and only then is the answer read.
 */
export function earlyAnswersSuite(profile: BackendProfile): void {
  describe(`early answers over ${profile.name}`, () => {
    let srv: TestServer;
    let conn: RawConnection;
    let before: string;

    beforeAll(async () => {
      srv = await startTestServer(profile, { MAX_UPLOAD_SIZE: String(64 * MB) });
      const put = await http(`${srv.url}/files/kept?${pyVersionQuery(STORED)}`, {
        method: 'PUT',
        body: 'the stored version',
      });
      expect(put.status).toBe(200);
    });
    afterAll(async () => {
      await srv?.close();
    });
    beforeEach(async () => {
      before = await snapshot(srv);
      conn = await RawConnection.open(srv.url);
    });
    afterEach(async () => {
      conn.close();
      await eventually(async () => expect(await temporaryFiles(srv)).toEqual([]));
      expect(await snapshot(srv)).toBe(before);
    });

    /** The connection is still usable: a request on it is answered at once. */
    async function nextRequestAnswered() {
      const version = await conn.exchange('GET', '/version', { timeoutMs: 5000 });
      expect(version.status).toBe(200);
      expect(version.body.toString()).toBe('{"protocol_versions": [2]}');
    }

    it.each([
      ['2 MB', 2 * MB],
      ['30 MB', 30 * MB],
    ])('PUT of an older version with a %s body: 200, then the next request', async (_n, size) => {
      const res = await conn.exchange('PUT', `/files/kept?${pyVersionQuery(OLDER)}`, {
        body: randomBytes(size),
      });
      expect(res.status).toBe(200);
      expect(res.headers['last-modified']).toBe('Wed, 18 May 2033 03:33:20 -0000');
      await nextRequestAnswered();
      expect((await http(`${srv.url}/files/kept`)).headers['last-modified']).toBe(
        'Wed, 18 May 2033 03:33:20 -0000',
      );
    });

    const body600k = randomBytes(600_000);
    it.each([
      ['SHA256-Checksum not hex', { 'sha256-checksum': 'xyz' }, 400, /Invalid SHA256-Checksum/],
      ['Logical-Size not a number', { 'logical-size': 'big' }, 400, /Invalid Logical-Size/],
      [
        'Logical-Size over MAX_UPLOAD_SIZE',
        { 'content-encoding': 'gzip', 'logical-size': String(65 * MB) },
        413,
        /MAX_UPLOAD_SIZE/,
      ],
      ['no last_modified', {}, 400, /Missing last_modified/],
    ])('%s: the error, then the next request', async (name, headers, status, message) => {
      const query = name === 'no last_modified' ? '' : `?${pyVersionQuery(OLDER + 1)}`;
      const res = await conn.exchange('PUT', `/files/refused${query}`, { headers, body: body600k });
      expect(res.status).toBe(status);
      expect(res.headers['x-exception']).toMatch(message);
      await nextRequestAnswered();
    });

    it('a body that is not gzip, streaming into the store under its hash: 400, then the next request', async () => {
      // Past the small-body size, with a hash: the streaming path into the blob store,
      // which fails on the first bytes while megabytes are still to come.
      const res = await conn.exchange('PUT', `/files/liar?${pyVersionQuery(OLDER)}`, {
        headers: { 'content-encoding': 'gzip', 'sha256-checksum': sha(Buffer.from('x')) },
        body: randomBytes(8 * MB),
      });
      expect(res.status).toBe(400);
      expect(res.headers['x-exception']).toMatch(/not valid gzip/);
      await nextRequestAnswered();
    });

    it('a body that is not gzip, naming stored content (checked only): 400, then the next request', async () => {
      const stored = Buffer.from('the stored version');
      const res = await conn.exchange('PUT', `/files/liar?${pyVersionQuery(OLDER)}`, {
        headers: { 'content-encoding': 'gzip', 'sha256-checksum': sha(stored) },
        body: randomBytes(8 * MB),
      });
      expect(res.status).toBe(400);
      await nextRequestAnswered();
    });

    it('a body whose content grows past MAX_UPLOAD_SIZE while spilling: 413, then the next request', async () => {
      // No hash: the body spills to TEMP_DIR. Gzip of random bytes is a little
      // longer than its content, so the content passes the limit near the end.
      const content = randomBytes(70 * MB);
      const res = await conn.exchange('PUT', `/files/big?${pyVersionQuery(OLDER)}`, {
        headers: { 'content-encoding': 'gzip' },
        body: gzipSync(content, { level: 1 }),
      });
      expect(res.status).toBe(413);
      await nextRequestAnswered();
    });

    it('unknown route and malformed URL with a body: the error, then the next request', async () => {
      const notFound = await conn.exchange('POST', '/nothing/here', { body: randomBytes(2 * MB) });
      expect(notFound.status).toBe(404);
      const malformed = await conn.exchange('PUT', `/files/a%2?${pyVersionQuery(OLDER)}`, {
        body: randomBytes(2 * MB),
      });
      expect(malformed.status).toBe(400);
      await nextRequestAnswered();
    });

    it('requests with no body and no Content-Length (as browsers send GET), answered at once: the connection stays', async () => {
      // A 404, a 405 and the status page's files are answered before Node has
      // marked such a request complete; none of them may close the connection.
      for (const [method, path, status] of [
        ['GET', '/nothing/here', 404],
        ['POST', '/version', 405],
        ['GET', '/ui/status.css', 200],
        ['GET', '/files/kept', 200],
      ] as const) {
        await conn.send(method, path, { host: 'localhost' }, Buffer.alloc(0));
        const res = await conn.read();
        expect(res.status, path).toBe(status);
        expect(res.headers.connection, path).not.toBe('close');
      }
      await nextRequestAnswered();
      expect(conn.closedByServer).toBe(false);
    });

    it(`past ${DRAIN_LIMIT / 2 ** 20} MiB unread: the answer says close, the client still gets it whole`, async () => {
      const res = await conn.exchange('PUT', `/files/refused?${pyVersionQuery(OLDER)}`, {
        headers: { 'sha256-checksum': 'xyz' },
        body: Buffer.alloc(DRAIN_LIMIT + 8 * MB),
        timeoutMs: 20_000,
      });
      expect(res.status).toBe(400);
      expect(res.headers.connection).toBe('close');
      // The server read the whole body after answering (the client could send it), then let go.
      await conn.closedWithin(5000);
      expect(await conn.acceptsBytes()).toBe(false);
    });

    it('a client asking for Connection: close still gets its early answer, the body read after it', async () => {
      // Python's urllib sends "Connection: close" with every request.
      const res = await conn.exchange('PUT', `/files/refused?${pyVersionQuery(OLDER)}`, {
        headers: { connection: 'close', 'sha256-checksum': 'xyz' },
        body: randomBytes(30 * MB),
      });
      expect(res.status).toBe(400);
      expect(res.headers['x-exception']).toMatch(/Invalid SHA256-Checksum/);
    });

    it('a request pipelined behind a body the server closes on is not run', async () => {
      await conn.send(
        'PUT',
        `/files/refused?${pyVersionQuery(OLDER)}`,
        {
          host: 'localhost',
          'content-length': String(DRAIN_LIMIT + MB),
          'sha256-checksum': 'xyz',
        },
        Buffer.alloc(DRAIN_LIMIT + MB),
      );
      await conn.send(
        'DELETE',
        `/files/kept?${pyVersionQuery(STORED)}`,
        { host: 'localhost' },
        Buffer.alloc(0),
      );
      const res = await conn.read();
      expect(res.status).toBe(400);
      expect(res.headers.connection).toBe('close');
      await conn.closedWithin(5000);
      // The DELETE was never answered, and never run.
      expect((await http(`${srv.url}/files/kept`)).status).toBe(200);
    });

    it('Python http.client sending a large refused body receives the 400', async () => {
      const { port } = new URL(srv.url);
      const script = `
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=30)
c.request('PUT', '/files/refused?last_modified=Fri,+13+Feb+2009+23:31:30+-0000',
          body=b'\\0' * (100 * 1000 * 1000), headers={'SHA256-Checksum': 'xyz'})
r = c.getresponse()
print(r.status, r.getheader('X-Exception'))
`;
      // Not spawnSync: the server under test runs in this process.
      const run = await runProcess('python3', ['-c', script, port]);
      expect(run.stderr).toBe('');
      expect(run.stdout.trim()).toBe(
        '400 Invalid SHA256-Checksum header: expected 64 hexadecimal digits',
      );
    });

    it('a client that stops sending after an early answer is dropped after a short linger', async () => {
      // Announces 200 MB, sends 1 MB, then falls silent: it has its answer,
      // and the server does not keep the connection for CLIENT_IDLE_TIMEOUT.
      await conn.send(
        'PUT',
        `/files/refused?${pyVersionQuery(OLDER)}`,
        { host: 'localhost', 'content-length': String(200 * MB), 'sha256-checksum': 'xyz' },
        randomBytes(MB),
      );
      const res = await conn.read();
      expect(res.status).toBe(400);
      expect(res.headers.connection).toBe('close');
      // Lingering: what the client still sends is read and dropped.
      expect(await conn.acceptsBytes()).toBe(true);
      // Silent for longer than LINGER_IDLE_MS: the server has let go.
      await new Promise((r) => setTimeout(r, LINGER_IDLE_MS + 1000));
      expect(await conn.acceptsBytes()).toBe(false);
    });
  });
}
