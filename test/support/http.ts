import { createHash } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { Client, type Dispatcher, request } from 'undici';
import { formatVersion } from '../../src/protocol/versions.js';

export interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export type Body = string | Buffer | Uint8Array | NodeJS.ReadableStream | null;

/** One HTTP request with nothing added or decoded: the test sees what the server sent. */
export async function http(
  url: string,
  options: {
    method?: Dispatcher.HttpMethod | string;
    headers?: Record<string, string>;
    body?: Body;
  } = {},
): Promise<HttpResponse> {
  const res = await request(url, {
    method: (options.method ?? 'GET') as Dispatcher.HttpMethod,
    headers: options.headers,
    body: options.body as Dispatcher.DispatchOptions['body'],
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(res.headers))
    headers[k] = Array.isArray(v) ? v.join(', ') : String(v ?? '');
  return { status: res.statusCode, headers, body };
}

/**
 * A request whose path goes on the wire exactly as given: URL parsing would
 * resolve "a/../b" and re-encode characters before the server ever saw them.
 */
export async function rawHttp(
  origin: string,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: Body } = {},
): Promise<HttpResponse> {
  const client = new Client(origin);
  try {
    const res = await client.request({
      path,
      method: (options.method ?? 'GET') as Dispatcher.HttpMethod,
      headers: options.headers,
      body: options.body as Dispatcher.DispatchOptions['body'],
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(res.headers))
      headers[k] = Array.isArray(v) ? v.join(', ') : String(v ?? '');
    return { status: res.statusCode, headers, body };
  } finally {
    await client.close();
  }
}

/** Compares bytes by length and digest: vitest's deep equality walks buffers byte by byte (slow on megabytes). */
export function digestOf(data: Buffer): string {
  return `${data.length}:${createHash('sha256').update(data).digest('hex')}`;
}

/** Python's urllib.parse.quote(path) with safe='/', which pathname2url uses on POSIX. */
export function pyQuote(path: string): string {
  let out = '';
  for (const byte of Buffer.from(path, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.\-~/]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** urlencode({'last_modified': formatdate(v)}): quote_plus, so spaces become "+". */
export function pyVersionQuery(version: number): string {
  const encoded = encodeURIComponent(formatVersion(version)).replace(/%20/g, '+');
  return `last_modified=${encoded}`;
}

/** Headers python-requests adds to every request. */
const REQUESTS_HEADERS = {
  'user-agent': 'python-requests/2.31.0',
  'accept-encoding': 'gzip, deflate',
  accept: '*/*',
  connection: 'keep-alive',
};

/**
 * Requests shaped exactly like filetracker.client.RemoteDataStore's:
 * `name` is the absolute Filetracker name ("/dir/file.txt"), the URL is
 * base + "/files" + pathname2url(name), add_file gzips at level 9 (GzipFile's
 * default) and sends SHA256-Checksum, Content-Encoding and Logical-Size.
 */
export const pyClient = {
  url(base: string, name: string): string {
    return `${base}/files${pyQuote(name)}`;
  },

  async put(
    base: string,
    name: string,
    content: Buffer,
    version: number,
    compress = true,
  ): Promise<HttpResponse> {
    const headers: Record<string, string> = {
      ...REQUESTS_HEADERS,
      'sha256-checksum': createHash('sha256').update(content).digest('hex'),
    };
    let body = content;
    if (compress) {
      body = gzipSync(content, { level: 9 });
      headers['content-encoding'] = 'gzip';
      headers['logical-size'] = String(content.length);
    }
    return http(`${pyClient.url(base, name)}?${pyVersionQuery(version)}`, {
      method: 'PUT',
      headers,
      body,
    });
  },

  /** get_stream: requests decodes gzip transparently. */
  async get(base: string, name: string): Promise<HttpResponse & { content: Buffer }> {
    const res = await http(pyClient.url(base, name), { headers: REQUESTS_HEADERS });
    const content = res.headers['content-encoding'] === 'gzip' ? gunzipSync(res.body) : res.body;
    return { ...res, content };
  },

  head(base: string, name: string): Promise<HttpResponse> {
    return http(pyClient.url(base, name), { method: 'HEAD', headers: REQUESTS_HEADERS });
  },

  delete(base: string, name: string, version: number): Promise<HttpResponse> {
    return http(`${pyClient.url(base, name)}?${pyVersionQuery(version)}`, {
      method: 'DELETE',
      headers: REQUESTS_HEADERS,
    });
  },
};

/** What the Python client does with Last-Modified: parsedate_tz + mktime_tz. */
export function pyParseLastModified(value: string | undefined): number | null {
  if (!value) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms / 1000;
}

/** A sample's value in a server's /metrics (0 when it has not been counted yet). */
export async function metricValue(base: string, name: string, labels = ''): Promise<number> {
  const text = (await http(`${base}/metrics`)).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line ? Number(line.split(' ')[1]) : 0;
}
