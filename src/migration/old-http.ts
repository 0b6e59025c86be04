import { pipeline, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Agent, type Dispatcher, interceptors, request } from 'undici';
import { AppError, backendUnavailable, StartupError } from '../errors.js';
import { withoutUserinfo } from '../observability/redact.js';
import { formatVersion, parseVersion } from '../protocol/versions.js';
import type { OldFile, OldHead, OldStore, OldUpload } from './source.js';
import { realName } from './source.js';

export interface OldServerOptions {
  /**
   * Its URL; a user and password in it (`http://user:secret@host:9999`,
   * percent-encoded) are sent as HTTP Basic credentials (an nginx with
   * auth_basic in front of it), and shown nowhere.
   */
  url: string;
  /** V1 servers: raw bodies, HTTP-date versions, no /list. */
  v1?: boolean;
  /** Per request: connecting and waiting for the answer's head, and silence while a body streams. */
  timeoutMs?: number;
}

/**
 * The old Filetracker server over HTTP (V2, or V1 with `v1`). Follows 307
 * redirects (a Filetracker migration server sends GETs of files it lacks to
 * its own fallback). Connection failures, timeouts and 5xx answers are
 * BACKEND_UNAVAILABLE ('filetracker'): a failing old server is never "absent".
 * Credentials in its URL go with every request to its origin, and to no
 * other (not to where it redirects elsewhere); a 401 or 403 is a refusal
 * (never "absent"), and at start-up a StartupError.
 */
export class OldFiletrackerServer implements OldStore {
  /** Its URL without the password (with the user, if any): for logs and messages. */
  readonly name: string;
  private readonly base: string;
  private readonly credentials: boolean;
  private readonly agent: Agent;
  private readonly dispatcher: Dispatcher;

  constructor(private readonly o: OldServerOptions) {
    const { base, shown, authorization } = splitCredentials(o.url);
    this.base = base;
    this.credentials = authorization !== undefined;
    this.name = `${o.v1 ? 'V1' : 'V2'} Filetracker at ${shown}`;
    const timeout = o.timeoutMs ?? 30_000;
    this.agent = new Agent({
      connect: { timeout: Math.min(timeout, 10_000) },
      headersTimeout: timeout,
      bodyTimeout: timeout,
    });
    // Composed last to first: the redirect interceptor is outside, so each
    // hop it makes passes through authorize(), which adds the credentials to
    // the hops to the old server's origin alone.
    this.dispatcher = this.agent.compose(
      ...(authorization === undefined ? [] : [authorize(new URL(base).origin, authorization)]),
      interceptors.redirect({ maxRedirections: 5 }),
    );
    this.list = o.v1 ? undefined : (dir, cutoff) => this.listV2(dir, cutoff);
  }

  /** Refuses a server that does not speak V2 (a V1 server has no /version: use migrate-v1). */
  async checkV2(): Promise<void> {
    const res = await this.send('GET', '/version/', 'asking for its protocol version');
    const text = await res.body.text().catch(() => '');
    let versions: unknown;
    try {
      versions = (JSON.parse(text) as { protocol_versions?: unknown }).protocol_versions;
    } catch {
      versions = undefined;
    }
    if (res.statusCode === 401 || res.statusCode === 403) {
      throw new StartupError(
        `${this.name} refused access (GET /version/: HTTP ${res.statusCode}): ${this.credentialsHint()}`,
      );
    }
    if (res.statusCode >= 500) {
      throw backendUnavailable(
        'filetracker',
        `${this.name} answered /version/ with HTTP ${res.statusCode}`,
      );
    }
    if (res.statusCode !== 200 || !Array.isArray(versions) || !versions.includes(2)) {
      throw new StartupError(
        `${this.name} does not speak Filetracker protocol 2 (GET /version/: HTTP ${res.statusCode}); for a V1 server use migrate-v1 or live-migrate-v1`,
      );
    }
  }

  /** V1 servers have no /list: absent, as the port says. */
  readonly list: ((dir: string, cutoff?: number) => AsyncIterable<string>) | undefined;

  private async *listV2(dir: string, cutoff?: number): AsyncIterable<string> {
    const query =
      cutoff === undefined ? '' : `?last_modified=${encodeURIComponent(formatVersion(cutoff))}`;
    const res = await this.send('GET', `/list/${encodePath(dir)}${query}`, 'listing files');
    // The original answers 400 for a directory it does not have.
    if (res.statusCode === 400 || res.statusCode === 404) {
      await res.body.dump();
      return;
    }
    await this.expectOk(res, 'listing files');
    let rest = '';
    try {
      for await (const chunk of res.body) {
        const lines = (rest + (chunk as Buffer).toString('utf8')).split('\n');
        rest = lines.pop() ?? '';
        for (const line of lines) if (line !== '') yield realName(line);
      }
    } catch (err) {
      throw this.failure('listing files', err);
    }
    if (rest !== '') yield realName(rest);
  }

  async head(path: string, signal?: AbortSignal): Promise<OldHead | null> {
    const res = await this.send('HEAD', `/files/${encodePath(path)}`, `reading ${path}`, signal);
    if (res.statusCode === 404) {
      await res.body.dump();
      return null;
    }
    await this.expectOk(res, `reading ${path}`);
    await res.body.dump();
    return this.describe(path, res.headers);
  }

  async fetch(path: string, signal?: AbortSignal): Promise<OldFile | null> {
    const res = await this.send('GET', `/files/${encodePath(path)}`, `reading ${path}`, signal);
    if (res.statusCode === 404) {
      await res.body.dump();
      return null;
    }
    await this.expectOk(res, `reading ${path}`);
    let head: OldHead;
    try {
      head = this.describe(path, res.headers);
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    return { ...head, body: this.bodyOf(res, path) };
  }

  async put(path: string, upload: OldUpload): Promise<void> {
    const gzip = Buffer.isBuffer(upload.body) ? Readable.from([upload.body]) : upload.body;
    // A V1 server stores bodies as they come: it gets the raw content.
    const send: { body: Readable; headers: Record<string, string> } = this.o.v1
      ? {
          // pipeline: a source failing mid-way fails the request, not the process.
          body: pipeline(gzip, createGunzip(), () => {}),
          headers: { 'content-length': String(upload.logicalSize) },
        }
      : {
          body: gzip,
          headers: {
            'content-encoding': 'gzip',
            'content-length': String(upload.length),
            'logical-size': String(upload.logicalSize),
            'sha256-checksum': upload.sha256,
          },
        };
    const res = await this.send(
      'PUT',
      `/files/${encodePath(path)}?last_modified=${encodeURIComponent(this.versionText(upload.version))}`,
      `writing ${path}`,
      undefined,
      send,
    );
    await this.expectOk(res, `writing ${path}`);
    await res.body.dump();
  }

  async delete(path: string, version: number): Promise<'done' | 'absent'> {
    const res = await this.send(
      'DELETE',
      `/files/${encodePath(path)}?last_modified=${encodeURIComponent(this.versionText(version))}`,
      `deleting ${path}`,
    );
    if (res.statusCode === 404) {
      await res.body.dump();
      return 'absent';
    }
    await this.expectOk(res, `deleting ${path}`);
    await res.body.dump();
    return 'done';
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /**
   * The answer's body, its failures (the old server gone mid-way, a body
   * shorter than its Content-Length) made the old server's: a copy cut off
   * is retried, and a client reading through live migration gets a 503.
   */
  private bodyOf(res: Dispatcher.ResponseData, path: string): Readable {
    const body = res.body;
    const fail = (err: unknown) => this.failure(`reading ${path}`, err);
    const wrapper = Readable.from(
      (async function* () {
        try {
          for await (const chunk of body) yield chunk as Buffer;
        } catch (err) {
          throw fail(err);
        }
      })(),
      { objectMode: false, highWaterMark: 64 * 1024 },
    );
    // Destroyed unread (the copy refused it from its headers): the answer is
    // let go too, or its connection would stay paused with no timeout.
    wrapper.once('close', () => {
      if (!body.readableEnded) body.destroy();
    });
    return wrapper;
  }

  /** V1 servers read HTTP dates; V2 ones the original's own format. */
  private versionText(version: number): string {
    return this.o.v1 ? new Date(version * 1000).toUTCString() : formatVersion(version);
  }

  private describe(path: string, headers: Record<string, string | string[] | undefined>): OldHead {
    const header = (name: string) => {
      const v = headers[name];
      return Array.isArray(v) ? v[0] : v;
    };
    const version = parseVersion(header('last-modified') ?? '');
    if (version === null) {
      throw new AppError(
        'BAD_GATEWAY',
        `${this.name} sent ${path} with an unreadable Last-Modified: ${JSON.stringify(header('last-modified') ?? null)}`,
        { backend: 'filetracker' },
      );
    }
    const number = (name: string) => {
      const v = header(name);
      return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
    };
    const encoding =
      (header('content-encoding') ?? '').toLowerCase() === 'gzip' ? 'gzip' : 'identity';
    return {
      version,
      encoding,
      length: number('content-length'),
      logicalSize: encoding === 'gzip' ? number('logical-size') : number('content-length'),
    };
  }

  private async send(
    method: Dispatcher.HttpMethod,
    path: string,
    doing: string,
    signal?: AbortSignal,
    extra: { body?: Readable | Buffer; headers?: Record<string, string> } = {},
  ): Promise<Dispatcher.ResponseData> {
    try {
      return await request(`${this.base}${path}`, {
        method,
        dispatcher: this.dispatcher,
        signal,
        body: extra.body,
        headers: extra.headers,
      });
    } catch (err) {
      throw this.failure(doing, err);
    }
  }

  private async expectOk(res: Dispatcher.ResponseData, doing: string): Promise<void> {
    if (res.statusCode >= 200 && res.statusCode < 300) return;
    if (res.statusCode === 401 || res.statusCode === 403) {
      // Its body is the proxy's page, of no use: what to do is said instead.
      await res.body.dump();
      throw new AppError(
        'BAD_GATEWAY',
        `${this.name} refused access, ${doing}: HTTP ${res.statusCode}; ${this.credentialsHint()}`,
        { backend: 'filetracker' },
      );
    }
    const text = (await res.body.text().catch(() => '')).slice(0, 200);
    const what = `${doing}: HTTP ${res.statusCode}${text ? ` ${text.trim()}` : ''}`;
    // A 4xx is an answer, not an outage: not worth retrying, but still the old server's failure.
    if (res.statusCode < 500 && res.statusCode !== 408 && res.statusCode !== 429) {
      throw new AppError('BAD_GATEWAY', `${this.name} refused ${what}`, { backend: 'filetracker' });
    }
    throw backendUnavailable('filetracker', `${this.name}, ${what}`);
  }

  private credentialsHint(): string {
    return this.credentials
      ? 'check the user and password in its URL'
      : 'if it asks for a password, give it in its URL (http://user:password@host:port)';
  }

  private failure(doing: string, err: unknown): AppError {
    if (err instanceof AppError) return err;
    return backendUnavailable(
      'filetracker',
      `${this.name}, ${doing}: ${(err as Error).message}`,
      err,
    );
  }
}

/**
 * The URL requests go to (without its user and password), the URL to show
 * (with the user, never the password), and the Authorization header to send
 * when it carried credentials (percent-decoded, as browsers and curl read them).
 */
function splitCredentials(raw: string): { base: string; shown: string; authorization?: string } {
  const trimmed = raw.replace(/\/+$/, '');
  // Never echoed as given: it may carry a password.
  const hidden = () => withoutUserinfo(trimmed);
  let url: URL;
  try {
    url = new URL(trimmed);
  } catch {
    throw new StartupError(`the old Filetracker's URL is not a valid URL: ${hidden()}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new StartupError(
      `the old Filetracker's URL must start with http:// or https://: ${hidden()}`,
    );
  }
  if (url.username === '' && url.password === '') return { base: trimmed, shown: trimmed };
  const user = percentDecoded(url.username);
  const password = percentDecoded(url.password);
  url.password = '';
  const shown = url.href.replace(/\/+$/, '');
  url.username = '';
  const base = url.href.replace(/\/+$/, '');
  const token = Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
  return { base, shown, authorization: `Basic ${token}` };
}

function percentDecoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    // A lone "%": taken as it is.
    return text;
  }
}

/**
 * An interceptor adding `authorization` to each request to `origin`, and to
 * no other: a redirect elsewhere does not carry the credentials away.
 */
function authorize(origin: string, authorization: string): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => {
    let to: string | undefined;
    try {
      to = opts.origin === undefined ? undefined : new URL(String(opts.origin)).origin;
    } catch {
      to = undefined;
    }
    if (to !== origin) return dispatch(opts, handler);
    return dispatch({ ...opts, headers: withAuthorization(opts.headers, authorization) }, handler);
  };
}

/**
 * `headers` with `authorization` set, in any of the shapes undici passes
 * along (the redirect interceptor hands on a flat name, value, ... list).
 */
function withAuthorization(
  headers: Dispatcher.DispatchOptions['headers'],
  value: string,
): Dispatcher.DispatchOptions['headers'] {
  const other = (name: unknown) => String(name).toLowerCase() !== 'authorization';
  if (headers == null) return { authorization: value };
  if (Array.isArray(headers) && !Array.isArray(headers[0])) {
    const flat: string[] = [];
    for (let i = 0; i + 1 < headers.length; i += 2) {
      if (other(headers[i])) flat.push(headers[i] as string, headers[i + 1] as string);
    }
    return [...flat, 'authorization', value];
  }
  if (Symbol.iterator in headers) {
    const pairs = [...(headers as Iterable<[string, string | string[] | undefined]>)];
    return [...pairs.filter(([name]) => other(name)), ['authorization', value]];
  }
  const record: Record<string, string | string[]> = {};
  for (const [name, v] of Object.entries(headers)) {
    if (other(name) && v !== undefined) record[name] = v;
  }
  return { ...record, authorization: value };
}

/** A Filetracker path in a URL: each segment percent-encoded, the slashes kept. */
function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/');
}
