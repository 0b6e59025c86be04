import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';
import { unmatchableHash, verifyPassword } from './password.js';
import type { Role, UserEntry } from './users-file.js';

export type AuthOutcome =
  | { ok: true; user: string; role: Role }
  | {
      ok: false;
      reason: 'missing' | 'malformed' | 'unknown-user' | 'wrong-password';
      user?: string;
    }
  | { ok: false; reason: 'rate-limited'; retryAfterSeconds: number; user?: string }
  /** Too many checks already waiting (a spray from many addresses): not this client's fault. */
  | { ok: false; reason: 'busy'; retryAfterSeconds: number; user?: string };

export interface AuthenticatorOptions {
  /** How long a checked password stays remembered after the user's last request (no slow hash meanwhile). */
  successTtlMs?: number;
  /** Failed attempts (unknown user, wrong password) an address may make per window... */
  maxFailures?: number;
  /** ...of this length, from its first failure; past them it is limited until the window ends. */
  failureWindowMs?: number;
  /** Addresses counted at once; when full, the oldest goes, so a spray from many addresses cannot grow it. */
  maxTrackedClients?: number;
  /** Slow hashes run at once (each holds 32 MiB while it runs); more wait in a queue... */
  maxConcurrentHashes?: number;
  /** ...of this length (each of the two queues, see hashSlot()); past it a request that needs one is answered 'busy'. */
  maxQueuedHashes?: number;
  /** Clock, in milliseconds (tests inject one). */
  now?: () => number;
}

interface CachedSuccess {
  /** The users file's hash for the user when the password was checked. */
  hash: string;
  /** HMAC of the password that matched it. */
  mac: Buffer;
  expires: number;
}

interface FailureWindow {
  failures: number;
  ends: number;
}

/** Users whose last success is remembered; a cap keeps a huge users file from growing memory. */
const MAX_CACHED_USERS = 10_000;

type Credentials = { user: string; password: string } | null;

// fatal: bytes that are not UTF-8 are malformed credentials, not U+FFFD.
const utf8 = new TextDecoder('utf-8', { fatal: true });
const BASIC = /^basic[ \t]+([A-Za-z0-9+/]*={0,2})[ \t]*$/i;

/** The user and password of a `Basic` Authorization header, or null when it is anything else. */
function parseBasic(header: string): Credentials {
  const token = BASIC.exec(header)?.[1];
  if (token === undefined || token.length % 4 === 1) return null;
  let decoded: string;
  try {
    decoded = utf8.decode(Buffer.from(token, 'base64'));
  } catch {
    return null;
  }
  const colon = decoded.indexOf(':');
  if (colon < 0) return null;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * What failed logins are counted by: the address, or for IPv6 its /64, the
 * block one host is usually given, so an attacker cannot take a fresh
 * address for every guess.
 */
export function clientKey(address: string): string {
  const lower = address.toLowerCase();
  const ip = lower.startsWith('::ffff:') && isIPv4(lower.slice(7)) ? lower.slice(7) : lower;
  if (!isIPv6(ip)) return ip;
  const [head = '', tail = ''] = ip.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => Number.parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

/**
 * Checks HTTP Basic credentials against the users file. The password hash is
 * deliberately slow and memory-hungry, so everything here is about running it
 * rarely: a correct password is remembered for a while (as an HMAC under a
 * key that dies with the process, never the password itself), and addresses
 * that keep failing, or a flood of requests too large to queue, are refused
 * before any hash runs.
 */
export class Authenticator {
  readonly counters = { hashChecks: 0, cacheHits: 0, failures: 0, rateLimited: 0 };

  private readonly successTtlMs: number;
  private readonly maxFailures: number;
  private readonly failureWindowMs: number;
  private readonly maxTrackedClients: number;
  private readonly maxConcurrentHashes: number;
  private readonly maxQueuedHashes: number;
  private readonly now: () => number;

  private readonly macKey = randomBytes(32);
  /** By user name; in order of last use, so the first entry is the one used longest ago. */
  private readonly successes = new Map<string, CachedSuccess>();
  /** By client address; Map order is window start, so expired windows are at the front. */
  private readonly clients = new Map<string, FailureWindow>();
  /** Checks running or queued, by credentials (see check()). */
  private readonly inFlight = new Map<string, Promise<boolean | number | 'busy'>>();
  private runningHashes = 0;
  /** Checks waiting for a slot: from addresses with a recent success, and from the rest. */
  private readonly trustedQueue: (() => void)[] = [];
  private readonly otherQueue: (() => void)[] = [];
  /** Addresses (clientKey) that logged in lately, until when; in order of last success. */
  private readonly trusted = new Map<string, number>();
  private dummyHash: string | undefined;

  constructor(
    private readonly users: { lookup(name: string): UserEntry | undefined },
    options: AuthenticatorOptions = {},
  ) {
    this.successTtlMs = options.successTtlMs ?? 300_000;
    this.maxFailures = options.maxFailures ?? 10;
    this.failureWindowMs = options.failureWindowMs ?? 60_000;
    this.maxTrackedClients = options.maxTrackedClients ?? 10_000;
    this.maxConcurrentHashes = options.maxConcurrentHashes ?? 1;
    this.maxQueuedHashes = options.maxQueuedHashes ?? 32;
    this.now = options.now ?? Date.now;
  }

  /** Addresses with failures counted now. */
  get trackedClients(): number {
    return this.clients.size;
  }

  /** `authorization`: the raw Authorization header; `client`: the client address (request.ip). */
  async check(authorization: string | undefined, client: string): Promise<AuthOutcome> {
    if (authorization === undefined) return { ok: false, reason: 'missing' };
    const credentials = parseBasic(authorization);
    if (!credentials) return { ok: false, reason: 'malformed' };
    const { user, password } = credentials;

    const entry = this.users.lookup(user);
    if (entry && this.remembered(entry, password)) {
      // Before the limiter: a correct user behind the same address as an
      // attacker (a NAT, a proxy) costs no hash and keeps working.
      this.counters.cacheHits++;
      this.trust(clientKey(client));
      return { ok: true, user, role: entry.role };
    }

    const address = clientKey(client);
    const limited = this.limitedFor(address);
    if (limited !== null) return this.rateLimited(limited, user);
    // Requests with the same credentials at once (judging machines starting
    // together under one user) share one check instead of queueing a hash each.
    const key = `${entry?.hash ?? ''}\n${this.mac(`${user}\n${password}`).toString('hex')}`;
    let checking = this.inFlight.get(key);
    const joined = checking !== undefined;
    if (!checking) {
      checking = this.slowCheck(password, entry, address).finally(() => this.inFlight.delete(key));
      this.inFlight.set(key, checking);
    }
    let match = await checking;
    // A shared check that did not run (its starter's queue was full, or its
    // starter's address got limited) says nothing of this request's own
    // address: it takes its own turn.
    if (joined && (match === 'busy' || typeof match === 'number')) {
      match = await this.slowCheck(password, entry, address);
    }
    if (match === 'busy') {
      this.counters.rateLimited++;
      return { ok: false, reason: 'busy', retryAfterSeconds: 1, user };
    }
    if (typeof match === 'number') return this.rateLimited(match, user);

    if (!entry || !match) {
      this.counters.failures++;
      // A success never clears the count: one known password must not
      // reset the guessing budget of whoever holds it.
      this.recordFailure(address);
      return { ok: false, reason: entry ? 'wrong-password' : 'unknown-user', user };
    }
    this.remember(entry, password);
    this.trust(address);
    return { ok: true, user, role: entry.role };
  }

  /**
   * Runs the slow hash when a slot is free: whether it matched, 'busy' when
   * the queue is full, or the seconds to wait when the address got limited
   * while it waited.
   */
  private async slowCheck(
    password: string,
    entry: UserEntry | undefined,
    client: string,
  ): Promise<boolean | number | 'busy'> {
    if (!(await this.hashSlot(this.isTrusted(client)))) return 'busy';
    try {
      // Failures may have piled up from this address while it waited.
      const stillLimited = this.limitedFor(client);
      if (stillLimited !== null) return stillLimited;
      this.counters.hashChecks++;
      // An unknown name costs the same hash as a known one, so timing does
      // not tell which names exist.
      this.dummyHash ??= unmatchableHash();
      return await verifyPassword(password, entry?.hash ?? this.dummyHash);
    } finally {
      this.releaseHashSlot();
    }
  }

  private mac(password: string): Buffer {
    return createHmac('sha256', this.macKey).update(password, 'utf8').digest();
  }

  /** Whether `password` is the one last found correct for this user, while the file's entry is unchanged. */
  private remembered(entry: UserEntry, password: string): boolean {
    const cached = this.successes.get(entry.name);
    if (!cached) return false;
    if (cached.hash !== entry.hash || cached.expires <= this.now()) {
      this.successes.delete(entry.name);
      return false;
    }
    if (!timingSafeEqual(this.mac(password), cached.mac)) return false;
    // Kept while in use: a busy user is never sent back to the slow hash (and
    // its queue, which a spray may hold full). A change of the entry in the
    // file still drops it at once.
    cached.expires = this.now() + this.successTtlMs;
    // Moved to the end: the first entry stays the one used longest ago.
    this.successes.delete(entry.name);
    this.successes.set(entry.name, cached);
    return true;
  }

  private remember(entry: UserEntry, password: string): void {
    this.successes.delete(entry.name);
    if (this.successes.size >= MAX_CACHED_USERS) {
      const oldest = this.successes.keys().next();
      if (!oldest.done) this.successes.delete(oldest.value);
    }
    this.successes.set(entry.name, {
      hash: entry.hash,
      mac: this.mac(password),
      expires: this.now() + this.successTtlMs,
    });
  }

  /** Seconds until `client` may try again, or null when it may now. */
  private limitedFor(client: string): number | null {
    const now = this.now();
    this.dropExpired(now);
    const window = this.clients.get(client);
    if (!window || window.failures < this.maxFailures) return null;
    return Math.max(1, Math.ceil((window.ends - now) / 1000));
  }

  private recordFailure(client: string): void {
    const now = this.now();
    this.dropExpired(now);
    const window = this.clients.get(client);
    if (window) {
      window.failures++;
      return;
    }
    if (this.clients.size >= this.maxTrackedClients) {
      const oldest = this.clients.keys().next();
      if (!oldest.done) this.clients.delete(oldest.value);
    }
    this.clients.set(client, { failures: 1, ends: now + this.failureWindowMs });
  }

  /** Windows end in the order they started, so the ended ones are a prefix of the map. */
  private dropExpired(now: number): void {
    for (const [client, window] of this.clients) {
      if (window.ends > now) return;
      this.clients.delete(client);
    }
  }

  private rateLimited(retryAfterSeconds: number, user: string): AuthOutcome {
    this.counters.rateLimited++;
    return { ok: false, reason: 'rate-limited', retryAfterSeconds, user };
  }

  /**
   * Waits for a turn to hash; false at once when the queue is full. Addresses
   * that logged in lately have a queue of their own, served first: a spray
   * from many addresses fills only the other one, and judging machines that
   * were working keep getting in. By address, not by name: a queue by name
   * would answer made-up names differently and tell which names exist.
   */
  private hashSlot(trusted: boolean): Promise<boolean> {
    if (this.runningHashes < this.maxConcurrentHashes) {
      this.runningHashes++;
      return Promise.resolve(true);
    }
    const queue = trusted ? this.trustedQueue : this.otherQueue;
    if (queue.length >= this.maxQueuedHashes) return Promise.resolve(false);
    // The slot passes straight from the releasing check to the next in line.
    return new Promise((resolve) => queue.push(() => resolve(true)));
  }

  private trust(address: string): void {
    this.trusted.delete(address);
    if (this.trusted.size >= this.maxTrackedClients) {
      const oldest = this.trusted.keys().next();
      if (!oldest.done) this.trusted.delete(oldest.value);
    }
    this.trusted.set(address, this.now() + this.successTtlMs);
  }

  private isTrusted(address: string): boolean {
    const until = this.trusted.get(address);
    if (until === undefined) return false;
    if (until > this.now()) return true;
    this.trusted.delete(address);
    return false;
  }

  private releaseHashSlot(): void {
    const next = this.trustedQueue.shift() ?? this.otherQueue.shift();
    if (next) next();
    else this.runningHashes--;
  }
}
