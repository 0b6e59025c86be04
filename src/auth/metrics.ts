import { Counter, Gauge, type Registry } from 'prom-client';
import type { Authenticator } from './guard.js';
import type { UserDirectory } from './users.js';

/** s3dedup_auth_*: what access control (AUTH_USERS_FILE) does. */
export function registerAuthMetrics(
  registry: Registry,
  auth: Authenticator,
  users: UserDirectory,
): void {
  const registers = [registry];
  // The authenticator counts on its own; a scrape copies its counts.
  const counter = (name: string, help: string, value: () => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(value());
      },
    });
  const gauge = (name: string, help: string, value: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(value());
      },
    });
  counter(
    's3dedup_auth_password_checks_total',
    'Passwords checked against their slow (scrypt) hash, unknown users included',
    () => auth.counters.hashChecks,
  );
  counter(
    's3dedup_auth_cache_hits_total',
    'Requests whose password matched one checked shortly before, with no slow hash run',
    () => auth.counters.cacheHits,
  );
  counter(
    's3dedup_auth_failures_total',
    'Requests refused for an unknown user or a wrong password',
    () => auth.counters.failures,
  );
  counter(
    's3dedup_auth_rate_limited_total',
    'Requests refused without a check: their address failed too often, or too many checks were waiting',
    () => auth.counters.rateLimited,
  );
  gauge(
    's3dedup_auth_tracked_clients',
    'Client addresses whose recent failures are being counted',
    () => auth.trackedClients,
  );
  gauge('s3dedup_auth_users', 'Users in AUTH_USERS_FILE as last read', () => users.size);
}
