import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';

/**
 * The status page (GET /ui/, SPEC §8): static files from the package's
 * ui/ folder, read once at start-up. The page polls ../metrics/json and
 * ../health with relative URLs, so it works at /ui/, at /ft/ui/ and behind a
 * proxy that mounts the server under a prefix.
 */
const FILES = {
  '': { name: 'index.html', type: 'text/html; charset=utf-8' },
  'status.js': { name: 'status.js', type: 'text/javascript; charset=utf-8' },
  'metrics-math.js': { name: 'metrics-math.js', type: 'text/javascript; charset=utf-8' },
  'status.css': { name: 'status.css', type: 'text/css; charset=utf-8' },
} as const;

// The browser itself refuses anything from elsewhere: the page runs on
// internal networks and must not depend on, or leak to, outside hosts.
const POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

// src/protocol/ui.ts and dist/protocol/ui.js are both two folders below the package root.
const UI_DIR = new URL('../../ui/', import.meta.url);

export function registerStatusPage(app: FastifyInstance): void {
  const bodies = Object.entries(FILES).map(([route, f]) => ({
    route,
    type: f.type,
    body: readFileSync(new URL(f.name, UI_DIR)),
  }));
  for (const base of ['', '/ft']) {
    for (const { route, type, body } of bodies) {
      app.get(`${base}/ui/${route}`, (request, reply) => {
        // The router ignores trailing slashes, but the page's relative URLs
        // need one: /ui must become /ui/.
        const path = request.url.split('?', 1)[0] ?? '';
        if (route === '' && !path.endsWith('/')) {
          // Relative, so a proxy's prefix in front of /ui stays; not cached
          // for good (301), in case the page moves.
          return reply.redirect(`ui/${request.url.slice(path.length)}`, 302);
        }
        return reply
          .header('content-type', type)
          .header('content-security-policy', POLICY)
          .header('x-content-type-options', 'nosniff')
          .header('cache-control', 'no-cache')
          .send(body);
      });
    }
  }
}
