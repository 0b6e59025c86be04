import { pipeline as pipeCallback, Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FileHead, Files } from '../dedup/service.js';
import { AppError, invalidPath } from '../errors.js';
import { uploadBody } from './body.js';
import { sendError } from './errors.js';
import {
  acceptsGzip,
  bodyEncoding,
  contentHints,
  declaredLength,
  requestVersion,
} from './headers.js';
import { parseFilePath, parseListDir } from './paths.js';
import { formatVersion } from './versions.js';

const TEXT = 'text/plain; charset=utf-8';
/** Lines of a listing are sent in chunks of about this many characters. */
const LIST_CHUNK = 64 * 1024;

/** Methods each Filetracker route answers; any other method gets 405 with this in Allow. */
export const ROUTE_METHODS = {
  files: 'GET, HEAD, PUT, DELETE',
  list: 'GET',
  version: 'GET',
} as const;

/**
 * Splits a raw request URL into the still-encoded remainder after the route
 * name and the query. We read the raw URL rather than Fastify's decoded
 * params so that decoding (and its errors) follow SPEC §2 exactly and an
 * encoded "%2F" or "%3F" means what the client meant.
 */
function splitUrl(
  url: string,
  base: string,
  route: 'files' | 'list',
): { rest: string; query: URLSearchParams } {
  const q = url.indexOf('?');
  const pathname = q < 0 ? url : url.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : url.slice(q + 1));
  let rest = pathname.replace(/^\/+/, '');
  if (base !== '') rest = rest.slice(base.length).replace(/^\/+/, '');
  rest = rest.slice(route.length);
  // For files the separator slash is dropped but no more: "/files//a" keeps its empty segment.
  rest = route === 'files' ? rest.replace(/^\//, '') : rest;
  return { rest, query };
}

/** Aborted when the client goes away before our answer is complete. */
function clientSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

function fileHeaders(reply: FastifyReply, file: FileHead, gzip: boolean): FastifyReply {
  reply
    .header('content-type', 'application/octet-stream')
    .header('last-modified', formatVersion(file.version))
    .header('logical-size', String(file.logicalSize))
    .header('vary', 'Accept-Encoding');
  if (gzip)
    reply.header('content-encoding', 'gzip').header('content-length', String(file.storedSize));
  else reply.header('content-length', String(file.logicalSize));
  return reply;
}

/** Registers the Filetracker v2 routes under `base` ("" for the root, "ft" for /ft). */
export function registerFiletrackerRoutes(
  app: FastifyInstance,
  service: Files,
  base: string,
): void {
  const at = (route: string) => (base === '' ? route : `/${base}${route}`);

  app.get(at('/version'), async (_request, reply) => {
    // Never fails: a 404 here silently downgrades the Python client to protocol 1.
    return reply.header('content-type', 'application/json').send('{"protocol_versions": [2]}');
  });

  app.get(at('/files/*'), async (request, reply) => {
    const path = parseFilePath(splitUrl(request.url, base, 'files').rest);
    const signal = clientSignal(reply);
    const { file, body } = await service.open(path, signal);
    const gzip = acceptsGzip(request.headers);
    fileHeaders(reply, file, gzip);
    if (gzip) return reply.send(body);
    // pipeline destroys the stored stream too if the client leaves mid-way.
    const stored = Buffer.isBuffer(body) ? Readable.from([body]) : body;
    const inflated = pipeCallback(stored, createGunzip({ chunkSize: 256 * 1024 }), (err) => {
      if (err && !signal.aborted)
        request.log.error({ err, path }, 'failed to inflate stored content');
    });
    return reply.send(inflated);
  });

  app.head(at('/files/*'), async (request, reply) => {
    const path = parseFilePath(splitUrl(request.url, base, 'files').rest);
    const file = await service.head(path);
    return fileHeaders(reply, file, acceptsGzip(request.headers)).send();
  });

  app.put(at('/files/*'), async (request, reply) => {
    const { rest, query } = splitUrl(request.url, base, 'files');
    const path = parseFilePath(rest);
    const version = requestVersion(query, request.headers, true);
    const stored = await service.put(
      {
        path,
        version,
        body: uploadBody(request.raw),
        encoding: bodyEncoding(request.headers),
        hints: contentHints(request.headers),
        declaredLength: declaredLength(request.headers),
      },
      clientSignal(reply),
    );
    return reply
      .header('content-type', TEXT)
      .header('last-modified', formatVersion(stored))
      .send('');
  });

  app.delete(at('/files/*'), async (request, reply) => {
    const { rest, query } = splitUrl(request.url, base, 'files');
    const path = parseFilePath(rest);
    const version = requestVersion(query, request.headers, true);
    const result = await service.delete(path, version, clientSignal(reply));
    const stored = result.outcome === 'absent' ? version : result.version;
    return reply
      .header('content-type', TEXT)
      .header('last-modified', formatVersion(stored))
      .send('');
  });

  const list = async (request: FastifyRequest, reply: FastifyReply) => {
    const { rest, query } = splitUrl(request.url, base, 'list');
    const dir = parseListDir(rest);
    const cutoff = requestVersion(query, request.headers, false) ?? Math.floor(Date.now() / 1000);
    const paths = service.list(dir, cutoff);
    // Fetch the first page before the status line, so a failing database is a
    // 503 and not a 200 with a truncated body.
    const first = await paths.next();
    async function* lines() {
      if (first.done) return;
      let chunk = `${first.value}\n`;
      for await (const path of paths) {
        chunk += `${path}\n`;
        if (chunk.length >= LIST_CHUNK) {
          yield chunk;
          chunk = '';
        }
      }
      yield chunk;
    }
    return reply.header('content-type', TEXT).send(Readable.from(lines()));
  };
  app.get(at('/list'), list);
  app.get(at('/list/*'), list);
}

/** 404 for unknown URLs, 405 for a known route with the wrong method. */
export function notFoundHandler(request: FastifyRequest, reply: FastifyReply): FastifyReply {
  const pathname = request.url.split('?')[0] ?? '';
  const route = /^\/+(?:ft\/+)?(files|list|version)(?:\/|$)/.exec(pathname)?.[1] as
    | keyof typeof ROUTE_METHODS
    | undefined;
  if (route && ROUTE_METHODS[route].split(', ').includes(request.method)) {
    // The route exists for this method; only the path is missing ("/files").
    return sendError(request, reply, invalidPath('empty'));
  }
  if (route) {
    reply.header('allow', ROUTE_METHODS[route]);
    return sendError(
      request,
      reply,
      new AppError('METHOD_NOT_ALLOWED', `Method ${request.method} is not allowed on /${route}`),
    );
  }
  return sendError(
    request,
    reply,
    new AppError('NOT_FOUND', `No route for ${request.method} ${pathname}`),
  );
}
