import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { AuthOutcome } from '../auth/guard.js';
import { forbidden, loginsBusy, tooManyAttempts, unauthorized } from '../errors.js';

/** What a request must show: nothing, any user's credentials, or a `write` user's. */
export type Need = 'open' | 'read' | 'write';

/** Checks a request's Authorization header (src/auth/guard.ts); `client` is its address. */
export interface CredentialCheck {
  check(authorization: string | undefined, client: string): Promise<AuthOutcome>;
}

/**
 * What a route needs, from the route Fastify matched (its pattern, so an
 * encoded or doubled slash cannot make /metrics look like something else)
 * and the method. `/version` stays open: the Python client reads a failing
 * /version as "protocol 1" and silently downgrades. `/health` stays open for
 * load balancers and supervisors; it tells nothing about the files. A URL
 * that matches no route needs credentials too, so a 404 tells a stranger
 * nothing about which routes exist.
 */
export function routeNeeds(route: string | undefined, method: string): Need {
  const path = (route ?? '').replace(/^\/ft(?=\/)/, '');
  if (path === '/version' || path === '/health') return 'open';
  if (path === '/files/*') return method === 'GET' || method === 'HEAD' ? 'read' : 'write';
  // Operators' endpoints: request rates and totals are for those who run the server.
  if (path === '/metrics' || path.startsWith('/metrics/') || path.startsWith('/ui')) return 'write';
  return 'read';
}

/** The user a request was made by, for the access log. */
const users = new WeakMap<FastifyRequest, string>();

export function requestUser(request: FastifyRequest): string | undefined {
  return users.get(request);
}

/**
 * AUTH_USERS_FILE: every request but the open routes shows HTTP Basic
 * credentials, checked before anything else of it is read. The answer
 * (401, 403, 429) is an early answer like any other: the body still coming
 * is settled by src/protocol/body.ts, so the client reads it and its
 * connection stays usable.
 */
export function registerAccessControl(app: FastifyInstance, credentials: CredentialCheck): void {
  app.addHook('onRequest', async (request) => {
    const need = routeNeeds(request.routeOptions.url, request.method);
    if (need === 'open') return;
    const outcome = await credentials.check(request.headers.authorization, request.ip);
    if (!outcome.ok) {
      if (outcome.reason === 'rate-limited') throw tooManyAttempts(outcome.retryAfterSeconds);
      if (outcome.reason === 'busy') throw loginsBusy(outcome.retryAfterSeconds);
      throw unauthorized(
        outcome.reason === 'missing'
          ? 'send HTTP Basic credentials (user:password@ in the URL, or ~/.netrc)'
          : outcome.reason === 'malformed'
            ? 'the Authorization header is not HTTP Basic credentials'
            : 'wrong user name or password',
      );
    }
    users.set(request, outcome.user);
    if (need === 'write' && outcome.role !== 'write') {
      throw forbidden(
        outcome.user,
        routeNeeds(request.routeOptions.url, 'GET') === 'write'
          ? 'see metrics or the status page'
          : `${request.method === 'DELETE' ? 'delete' : 'upload'} files`,
      );
    }
  });
}
