import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gunzipSync, gzipSync } from 'node:zlib';
import { formatVersion, parseVersion } from '../../src/protocol/versions.js';

/** A file as the old server holds it. */
export interface OldFile {
  /** V2: the gzip blob; V1: the raw content. */
  stored: Buffer;
  logicalSize: number;
  version: number;
}

/**
 * A 500 answer, a connection reset before the answer, a body cut off half-way
 * (the server died mid-answer), or a 404 for a file that is listed (it went away).
 */
type Failure = 'error' | 'reset' | 'cut' | 'gone';

/**
 * A faithful stand-in for the original Python Filetracker server (V2, or V1
 * with `v1: true`), which cannot run here, following the protocol as the
 * spec and the original's code describe it:
 * - V2: `/version` and `/version/`; files stored and served gzip with
 *   `Content-Encoding: gzip`, `Content-Length`, `Logical-Size` and
 *   `Last-Modified` as `formatdate` writes it; `/list/DIR` in directory-walk
 *   order (not sorted), a line per file ending in "\n", non-ASCII names
 *   mis-encoded as the original lists them (each UTF-8 byte as a Latin-1
 *   character, encoded as UTF-8 again), 400 for a directory that does not
 *   exist; DELETE answering 404 for an absent file;
 * - V1: raw bodies, an HTTP-date `Last-Modified`, no `/version`, no `/list`;
 * - a migration mode (`redirectTo`): GET of a file it does not have answers
 *   307 to the same path on another server, as Filetracker's migration server does;
 * - injectable failures per path (500s, connections reset), and a log of requests;
 * - behind HTTP Basic auth (`basicAuth`), as an nginx with auth_basic in
 *   front of it: a request without the credentials, or with others, is a
 *   401 with nginx's page and `WWW-Authenticate`, before it reaches the server.
 */
export class FakeFiletracker {
  readonly files = new Map<string, OldFile>();
  readonly requests: string[] = [];
  /** Failures to inject, per path, in order. */
  private readonly failures = new Map<string, Failure[]>();
  /** Every request fails with 503 (the server is down behind its proxy). */
  down = false;
  /** A pause before each answer about a file (to catch a migration mid-way). */
  delayMs = 0;
  /** The user and password the proxy in front asks for; null: none (the default). */
  basicAuth: { user: string; password: string } | null;
  /** The Authorization header of each request, in the order of `requests` (undefined: none). */
  readonly authorizations: Array<string | undefined> = [];
  private server: Server | null = null;
  url = '';

  constructor(
    private readonly options: {
      v1?: boolean;
      redirectTo?: string;
      basicAuth?: { user: string; password: string };
    } = {},
  ) {
    this.basicAuth = options.basicAuth ?? null;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    const address = this.server.address();
    if (typeof address !== 'object' || !address) throw new Error('no address');
    this.url = `http://127.0.0.1:${address.port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** Stores `content` as a client's PUT would. */
  add(path: string, content: Buffer, version: number): void {
    this.files.set(path, {
      stored: this.options.v1 ? content : gzipSync(content),
      logicalSize: content.length,
      version,
    });
  }

  /** The content of a stored file. */
  content(path: string): Buffer | undefined {
    const file = this.files.get(path);
    if (!file) return undefined;
    return this.options.v1 ? file.stored : gunzipSync(file.stored);
  }

  /** The next `count` requests for `path` fail as `kind`. */
  fail(path: string, kind: Failure, count = 1): void {
    this.failures.set(path, [...(this.failures.get(path) ?? []), ...Array(count).fill(kind)]);
  }

  /** Failures not yet answered are forgotten: the old server recovered. */
  heal(): void {
    this.failures.clear();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://old');
    const method = req.method ?? 'GET';
    const route = /^\/(files|list|version)(?:\/(.*))?$/.exec(url.pathname);
    const path = route?.[2] === undefined ? '' : decodeURIComponent(route[2]);
    this.requests.push(`${method} /${route?.[1] ?? ''}/${path}`);
    this.authorizations.push(req.headers.authorization);
    const body = await readBody(req);
    if (this.basicAuth && !authorized(req.headers.authorization, this.basicAuth)) {
      res.writeHead(401, {
        'content-type': 'text/html',
        'www-authenticate': 'Basic realm="Filetracker"',
      });
      res.end(
        '<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n',
      );
      return;
    }
    if (this.down) return text(res, 503, 'Service Unavailable');
    const failure = this.failures.get(path)?.shift();
    if (failure === 'reset') {
      res.socket?.destroy();
      return;
    }
    if (failure === 'error') return text(res, 500, 'Internal Server Error');
    if (failure === 'gone') return text(res, 404, `File ${path} not found`);

    if (route?.[1] === 'version' && !this.options.v1 && method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"protocol_versions": [2]}');
      return;
    }
    if (route?.[1] === 'list' && !this.options.v1 && method === 'GET')
      return this.list(path, url, res);
    if (route?.[1] !== 'files' || path === '') return text(res, 404, 'Not Found');
    if (this.delayMs > 0) await new Promise((r) => setTimeout(r, this.delayMs));

    const version = () => {
      const given = url.searchParams.get('last_modified') ?? req.headers['last-modified'];
      return typeof given === 'string' ? parseVersion(given) : null;
    };
    const file = this.files.get(path);
    switch (method) {
      case 'GET':
      case 'HEAD': {
        if (!file) {
          if (this.options.redirectTo) {
            res.writeHead(307, {
              location: `${this.options.redirectTo}/files/${encodePath(path)}`,
            });
            res.end();
            return;
          }
          return text(res, 404, `File ${path} not found`);
        }
        const headers: Record<string, string | number> = this.options.v1
          ? {
              'content-type': 'application/octet-stream',
              'content-length': file.stored.length,
              'last-modified': new Date(file.version * 1000).toUTCString(),
            }
          : {
              'content-type': 'application/octet-stream',
              'content-length': file.stored.length,
              'content-encoding': 'gzip',
              'last-modified': formatVersion(file.version),
              'logical-size': file.logicalSize,
            };
        res.writeHead(200, headers);
        if (failure === 'cut' && method === 'GET') {
          res.write(file.stored.subarray(0, file.stored.length >> 1));
          setTimeout(() => res.socket?.destroy(), 20);
          return;
        }
        res.end(method === 'HEAD' ? undefined : file.stored);
        return;
      }
      case 'PUT': {
        const v = version();
        if (v === null) return text(res, 400, '"?last-modified=" is required');
        if (!file || file.version <= v) {
          const gzip = (req.headers['content-encoding'] ?? '') === 'gzip';
          const content = gzip ? gunzipSync(body) : body;
          this.add(path, content, v);
        }
        res.writeHead(200, {
          'content-type': 'text/plain',
          'last-modified': formatVersion(this.files.get(path)?.version ?? v),
        });
        res.end();
        return;
      }
      case 'DELETE': {
        const v = version();
        if (v === null) return text(res, 400, '"?last-modified=" is required');
        if (!file) return text(res, 404, '');
        if (file.version <= v) this.files.delete(path);
        res.writeHead(200);
        res.end();
        return;
      }
      default:
        return text(res, 405, 'Method Not Allowed');
    }
  }

  private list(dir: string, url: URL, res: ServerResponse): void {
    const prefix = dir === '' ? '' : `${dir.replace(/\/+$/, '')}/`;
    const cutoffText = url.searchParams.get('last_modified');
    const cutoff = cutoffText
      ? (parseVersion(cutoffText) ?? Number.POSITIVE_INFINITY)
      : Date.now() / 1000;
    const names = [...this.files.keys()].filter((p) => p.startsWith(prefix));
    if (prefix !== '' && names.length === 0) {
      text(res, 400, "Path doesn't exist or is not a directory");
      return;
    }
    res.writeHead(200);
    // Walk order, not sorted: newest first here.
    for (const name of names.reverse()) {
      if ((this.files.get(name)?.version ?? 0) > cutoff) continue;
      res.write(Buffer.from(`${misEncode(name.slice(prefix.length))}\n`, 'utf8'));
    }
    res.end();
  }
}

/** How the original lists a name: each UTF-8 byte read as a Latin-1 character. */
export function misEncode(name: string): string {
  return Buffer.from(name, 'utf8').toString('latin1');
}

/** As nginx reads `Authorization: Basic base64(user:password)`: the scheme in any case, split at the first colon. */
function authorized(
  header: string | undefined,
  wanted: { user: string; password: string },
): boolean {
  const token = /^basic\s+(\S+)\s*$/i.exec(header ?? '')?.[1];
  if (token === undefined) return false;
  const decoded = Buffer.from(token, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  return decoded.slice(0, colon) === wanted.user && decoded.slice(colon + 1) === wanted.password;
}

function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}

function text(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain' });
  res.end(body);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
