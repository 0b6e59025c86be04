import { readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Authenticator, type AuthOutcome, clientKey } from '../../src/auth/guard.js';
import { registerAuthMetrics } from '../../src/auth/metrics.js';
import {
  DEFAULT_SCRYPT,
  hashFormatProblem,
  hashPassword,
  verifyPassword,
} from '../../src/auth/password.js';
import { UserDirectory } from '../../src/auth/users.js';
import {
  parseUsers,
  readUsersFile,
  removeUser,
  setUser,
  type UserEntry,
  UsersFileError,
  writeUsersFile,
} from '../../src/auth/users-file.js';
import { StartupError } from '../../src/errors.js';
import { makeTempDir } from '../support/tmp.js';

/** Cheap hashes for tests that are not about the cost. */
const FAST = { logN: 4, r: 8, p: 1 };
const fastHash = (password: string) => hashPassword(password, FAST);
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`;

describe('password hashes', () => {
  it('round-trips in the passlib $scrypt$ format, 16-byte salt and 32-byte key', async () => {
    const hash = await hashPassword('pässwörd: with colon');
    expect(hash).toMatch(/^\$scrypt\$ln=15,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    // Above glibc's 32 MiB mmap ceiling, so each check's memory is given back (password.ts).
    expect(128 * 2 ** DEFAULT_SCRYPT.logN * DEFAULT_SCRYPT.r).toBeGreaterThanOrEqual(
      32 * 1024 * 1024,
    );
    expect(hashFormatProblem(hash)).toBeNull();
    expect(await verifyPassword('pässwörd: with colon', hash)).toBe(true);
    expect(await verifyPassword('passwörd: with colon', hash)).toBe(false);
    expect(await verifyPassword('', hash)).toBe(false);
    // A fresh salt each time.
    expect(await hashPassword('pässwörd: with colon')).not.toBe(hash);
  });

  it("verifies a hash made elsewhere (Python's hashlib.scrypt, written as passlib does)", async () => {
    const python =
      '$scrypt$ln=4,r=8,p=1$MDEyMzQ1Njc4OWFiY2RlZg$OAkZqUBelG6VIYdTJfYSENL5OmZRxMa3GwXn5oFliTg';
    expect(hashFormatProblem(python)).toBeNull();
    expect(await verifyPassword('correct horse', python)).toBe(true);
    expect(await verifyPassword('correct horsf', python)).toBe(false);
  });

  it('names what is wrong with a malformed or too costly hash, and never verifies one', async () => {
    const good = await fastHash('x');
    const [, , , salt, key] = good.split('$');
    const withParams = (params: string) => `$scrypt$${params}$${salt}$${key}`;
    const cases: [string, RegExp][] = [
      ['secret', /not a \$scrypt\$ hash/],
      [`$argon2id$v=19$m=65536,t=3,p=4$${salt}$${key}`, /not a \$scrypt\$ hash/],
      [`${good}$`, /not a \$scrypt\$ hash/],
      [withParams('ln=4,r=8'), /ln=N,r=N,p=N/],
      [withParams('r=8,ln=4,p=1'), /ln=N,r=N,p=N/],
      [withParams('ln=0,r=8,p=1'), /ln must be 1\.\.20/],
      [withParams('ln=21,r=8,p=1'), /ln must be 1\.\.20/],
      [withParams('ln=999,r=8,p=1'), /ln must be 1\.\.20/],
      [withParams('ln=4,r=33,p=1'), /r must be 1\.\.32/],
      [withParams('ln=4,r=8,p=17'), /p must be 1\.\.16/],
      // Each within its bound, together gigabytes.
      [withParams('ln=20,r=32,p=1'), /MiB of memory/],
      [withParams('ln=17,r=8,p=1'), /MiB of memory/],
      [`$scrypt$ln=4,r=8,p=1$${salt}==$${key}`, /salt is not unpadded base64/],
      [`$scrypt$ln=4,r=8,p=1$${salt}$${key}!`, /key is not unpadded base64/],
      [`$scrypt$ln=4,r=8,p=1$QUJD$${key}`, /salt must be/],
      [`$scrypt$ln=4,r=8,p=1$${salt}$QUJD`, /key must be/],
    ];
    for (const [hash, reason] of cases) {
      expect(hashFormatProblem(hash), hash).toMatch(reason);
      expect(hashFormatProblem(hash)).not.toContain(key);
      expect(await verifyPassword('x', hash), hash).toBe(false);
    }
    // passlib's default cost is admitted.
    expect(hashFormatProblem(withParams('ln=16,r=8,p=1'))).toBeNull();
  });
});

describe('users file', () => {
  let hash: string;
  beforeEach(async () => {
    hash = await fastHash('pw');
  });

  it('reads name:role:hash lines, skipping blank lines and comments', () => {
    const users = parseUsers(
      `# who may use the server\n\nalice:read:${hash}\r\n  # indented comment\nb.o_b@x-y:write:${hash}\n`,
      'users',
    );
    expect([...users.values()]).toEqual([
      { name: 'alice', role: 'read', hash },
      { name: 'b.o_b@x-y', role: 'write', hash },
    ]);
    expect(parseUsers('', 'users').size).toBe(0);
  });

  it('names the file and line of each mistake, never the hash', () => {
    const at = (text: string) => {
      try {
        parseUsers(text, '/etc/s3dedup/users');
      } catch (err) {
        expect(err).toBeInstanceOf(UsersFileError);
        const message = (err as Error).message;
        expect(message).not.toContain(hash.slice(10));
        return message;
      }
      throw new Error('parsed');
    };
    const ok = `alice:read:${hash}\n`;
    expect(at(`${ok}bad name:read:${hash}`)).toMatch(
      /^\/etc\/s3dedup\/users line 2: user name "bad name" must be 1 to 64 characters/,
    );
    expect(at(`${ok}${'a'.repeat(65)}:read:${hash}`)).toMatch(/line 2: user name .* must be/);
    expect(at(`${ok}:read:${hash}`)).toMatch(/line 2: user name "" must be/);
    expect(at(`#\n${ok}bob:admin:${hash}`)).toMatch(
      /line 3: user bob: unknown role "admin" \(must be read or write\)/,
    );
    // Fields out of order put the hash where the role goes: it is not shown.
    expect(at(`bob:${hash}:read`)).toMatch(/line 1: user bob: unknown role \(not shown\)/);
    expect(at(`${ok}bob:read:$scrypt$ln=40,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAA`)).toMatch(
      /line 2: user bob: bad password hash: ln must be 1\.\.20/,
    );
    expect(at(`${ok}bob:read:plaintext`)).toMatch(
      /line 2: user bob: bad password hash: not a \$scrypt\$ hash/,
    );
    expect(at(`${ok}\n\nalice:write:${hash}`)).toMatch(
      /line 4: user alice is already defined on line 1/,
    );
    expect(at(`${ok}bob:read`)).toMatch(/line 2: expected name:role:hash, found 2 fields/);
    expect(at(`${ok}bob:read:${hash}:extra`)).toMatch(/line 2: expected name:role:hash, found 4/);
    expect(at('bob')).toMatch(/line 1: expected name:role:hash, found 1 field$/);
  });

  it('sets and removes users, keeping comments, blank lines and the order of the others', async () => {
    const other = await fastHash('other');
    const text = `# header\nalice:read:${hash}\n\n# bob is the CI\nbob:write:${hash}\n`;
    const updated = setUser(text, { name: 'alice', role: 'write', hash: other }, 'users');
    expect(updated).toEqual({
      replaced: true,
      text: `# header\nalice:write:${other}\n\n# bob is the CI\nbob:write:${hash}\n`,
    });
    const added = setUser(updated.text, { name: 'carol', role: 'read', hash }, 'users');
    expect(added.replaced).toBe(false);
    expect(added.text).toBe(`${updated.text}carol:read:${hash}\n`);
    // A last line without its newline gets one before the new user.
    expect(setUser(`# x\nalice:read:${hash}`, { name: 'b', role: 'read', hash }, 'u').text).toBe(
      `# x\nalice:read:${hash}\nb:read:${hash}\n`,
    );
    expect(setUser('', { name: 'b', role: 'read', hash }, 'u').text).toBe(`b:read:${hash}\n`);
    const removed = removeUser(added.text, 'bob', 'users');
    expect(removed).toEqual({
      removed: true,
      text: `# header\nalice:write:${other}\n\n# bob is the CI\ncarol:read:${hash}\n`,
    });
    expect(removeUser(removed.text, 'bob', 'users')).toEqual({
      removed: false,
      text: removed.text,
    });
    // A commented-out user is a comment, not that user.
    expect(removeUser(`#alice:read:${hash}\n`, 'alice', 'u').removed).toBe(false);
    expect(parseUsers(removed.text, 'users').size).toBe(2);
    // A broken file is not edited.
    expect(() => setUser('alice:read', { name: 'b', role: 'read', hash }, 'u')).toThrow(
      UsersFileError,
    );
    expect(() => removeUser('alice:read', 'alice', 'u')).toThrow(UsersFileError);
  });

  it('writes by rename, mode 0600, leaving no temporary file; a missing file is an error saying so', async () => {
    const dir = await makeTempDir();
    try {
      const path = join(dir.path, 'users');
      await expect(readUsersFile(path)).rejects.toThrow(
        new RegExp(`users file ${path} does not exist`),
      );
      await writeUsersFile(path, `alice:read:${hash}\n`);
      const first = await stat(path);
      expect(first.mode & 0o777).toBe(0o600);
      await writeUsersFile(path, `alice:write:${hash}\n`);
      const second = await stat(path);
      expect(second.mode & 0o777).toBe(0o600);
      expect(second.ino).not.toBe(first.ino);
      expect((await readUsersFile(path)).get('alice')?.role).toBe('write');
      expect(await readdir(dir.path)).toEqual(['users']);
    } finally {
      await dir.remove();
    }
  });
});

/** A logger whose lines the test reads. */
function memoryLogger() {
  const lines: { level: number; msg: string; users?: number }[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines, errors: () => lines.filter((l) => l.level >= 50) };
}

async function until(condition: () => boolean, ms: number): Promise<number> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await sleep(5);
  }
  return Date.now() - start;
}

describe('UserDirectory', () => {
  let dir: { path: string; remove(): Promise<void> };
  let path: string;
  let hash: string;
  const directories: UserDirectory[] = [];
  beforeEach(async () => {
    dir = await makeTempDir();
    path = join(dir.path, 'users');
    hash = await fastHash('pw');
  });
  afterEach(async () => {
    for (const d of directories.splice(0)) d.close();
    await dir.remove();
  });
  const open = async (options?: { pollMs?: number }) => {
    const log = memoryLogger();
    const users = await UserDirectory.open(path, log.logger, options);
    directories.push(users);
    return { users, log };
  };

  it('refuses to start on a missing or malformed file, saying what is wrong', async () => {
    await expect(open()).rejects.toThrow(StartupError);
    await expect(open()).rejects.toThrow(/AUTH_USERS_FILE: users file .* does not exist/);
    await writeFile(path, `alice:read:${hash}\nalice:write:${hash}\n`);
    await expect(open()).rejects.toThrow(/line 2: user alice is already defined on line 1/);
  });

  it('sees a changed file within a second, logging the number of users and no hash', async () => {
    await writeUsersFile(path, `alice:read:${hash}\n`);
    const { users, log } = await open();
    expect(users.size).toBe(1);
    expect(users.lookup('alice')?.role).toBe('read');
    expect(users.lookup('bob')).toBeUndefined();

    await writeUsersFile(path, `alice:write:${hash}\nbob:read:${hash}\n`);
    expect(await until(() => users.lookup('bob') !== undefined, 1000)).toBeLessThan(1000);
    expect(users.lookup('alice')?.role).toBe('write');
    expect(users.size).toBe(2);
    // Revoking works the same way.
    await writeUsersFile(path, `bob:read:${hash}\n`);
    await until(() => users.lookup('alice') === undefined, 1000);
    const reloads = log.lines.filter((l) => l.msg === 'users file reloaded');
    expect(reloads.map((l) => l.users)).toEqual([2, 1]);
    expect(JSON.stringify(log.lines)).not.toContain('$scrypt$');
  });

  it('keeps the last good users when the file turns malformed or goes, logging one error per change', async () => {
    await writeUsersFile(path, `alice:read:${hash}\n`);
    const { users, log } = await open({ pollMs: 10 });

    await writeUsersFile(path, `alice:read:${hash}\nbob:boss:${hash}\n`);
    await until(() => log.errors().length > 0, 1000);
    await sleep(100); // ten polls more
    expect(log.errors()).toHaveLength(1);
    expect(log.errors()[0]?.msg).toMatch(/line 2: user bob: unknown role "boss"/);
    expect(users.lookup('alice')?.role).toBe('read');
    expect(users.lookup('bob')).toBeUndefined();

    await rm(path);
    await until(() => log.errors().length > 1, 1000);
    await sleep(100);
    expect(log.errors()).toHaveLength(2);
    expect(log.errors()[1]?.msg).toMatch(/does not exist/);
    expect(users.lookup('alice')?.role).toBe('read');

    // Put back as an editor would (write elsewhere, rename): read again.
    await writeFile(join(dir.path, 'new'), `carol:write:${hash}\n`);
    await rename(join(dir.path, 'new'), path);
    await until(() => users.lookup('carol') !== undefined, 1000);
    expect(users.lookup('alice')).toBeUndefined();
    expect(log.errors()).toHaveLength(2);
  });

  it('stops polling when closed', async () => {
    await writeUsersFile(path, `alice:read:${hash}\n`);
    const { users } = await open({ pollMs: 10 });
    users.close();
    await writeUsersFile(path, `bob:read:${hash}\n`);
    await sleep(100);
    expect(users.lookup('alice')).toBeDefined();
  });
});

describe('Authenticator', () => {
  let users: Map<string, UserEntry>;
  let clock: number;
  const now = () => clock;
  const directory = { lookup: (name: string) => users.get(name) };
  beforeEach(async () => {
    clock = 1_000_000;
    users = new Map([
      ['alice', { name: 'alice', role: 'read', hash: await fastHash('alice-pw') }],
      ['bob', { name: 'bob', role: 'write', hash: await fastHash('bob:pw:with:colons') }],
    ]);
  });

  it('tells missing, malformed, unknown user, wrong password and success apart', async () => {
    const auth = new Authenticator(directory, { now });
    expect(await auth.check(undefined, 'c')).toEqual({ ok: false, reason: 'missing' });
    const malformed = [
      '',
      'Bearer abc',
      'Basic',
      'Basic !!!!',
      'Basic a',
      `Basic ${Buffer.from('no colon').toString('base64')}`,
      `Basic ${Buffer.from([0x61, 0x3a, 0xff, 0xfe]).toString('base64')}`,
      `Digest ${Buffer.from('alice:alice-pw').toString('base64')}`,
    ];
    for (const header of malformed) {
      expect(await auth.check(header, 'c'), header).toEqual({ ok: false, reason: 'malformed' });
    }
    expect(auth.counters.hashChecks).toBe(0);

    expect(await auth.check(basic('alice', 'alice-pw'), 'c')).toEqual({
      ok: true,
      user: 'alice',
      role: 'read',
    });
    // Scheme in any case; the password is what follows the first colon.
    const bobHeader = `bAsIc  ${Buffer.from('bob:bob:pw:with:colons').toString('base64')}`;
    expect(await auth.check(bobHeader, 'c')).toEqual({ ok: true, user: 'bob', role: 'write' });
    expect(await auth.check(basic('alice', 'wrong'), 'c')).toEqual({
      ok: false,
      reason: 'wrong-password',
      user: 'alice',
    });
    expect(await auth.check(basic('mallory', 'alice-pw'), 'c')).toEqual({
      ok: false,
      reason: 'unknown-user',
      user: 'mallory',
    });
    // An unknown name still costs a slow hash (so timing does not reveal names).
    expect(auth.counters).toEqual({ hashChecks: 4, cacheHits: 0, failures: 2, rateLimited: 0 });
  });

  it('checks a correct password once, then trusts its HMAC until unused for the TTL', async () => {
    const auth = new Authenticator(directory, { now, successTtlMs: 60_000 });
    const header = basic('alice', 'alice-pw');
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect(auth.counters.hashChecks).toBe(1);
    for (let i = 0; i < 5; i++) expect((await auth.check(header, `c${i}`)).ok).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 1, cacheHits: 5 });
    // A wrong password for a cached user is checked in full, and not cached.
    expect((await auth.check(basic('alice', 'alice-pX'), 'c')).ok).toBe(false);
    expect(auth.counters).toMatchObject({ hashChecks: 2, cacheHits: 5 });
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 2, cacheHits: 6 });

    clock += 59_999;
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 2, cacheHits: 7 });
    // Each use keeps it: still remembered 59.999 s after the last one...
    clock += 59_999;
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 2, cacheHits: 8 });
    // ...and checked again once unused for the whole TTL.
    clock += 60_000;
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 3, cacheHits: 8 });
  });

  it('forgets a cached password as soon as the file changes it or removes the user', async () => {
    const auth = new Authenticator(directory, { now });
    const header = basic('alice', 'alice-pw');
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect((await auth.check(header, 'c')).ok).toBe(true);
    expect(auth.counters.cacheHits).toBe(1);

    users.set('alice', { name: 'alice', role: 'read', hash: await fastHash('new-pw') });
    expect(await auth.check(header, 'c')).toMatchObject({ ok: false, reason: 'wrong-password' });
    expect((await auth.check(basic('alice', 'new-pw'), 'c')).ok).toBe(true);
    expect(auth.counters).toMatchObject({ cacheHits: 1, hashChecks: 3 });

    // A role change with the same hash takes effect at once, still from the cache.
    const alice = users.get('alice') as UserEntry;
    users.set('alice', { ...alice, role: 'write' });
    expect(await auth.check(basic('alice', 'new-pw'), 'c')).toEqual({
      ok: true,
      user: 'alice',
      role: 'write',
    });
    expect(auth.counters).toMatchObject({ cacheHits: 2, hashChecks: 3 });

    users.delete('alice');
    expect(await auth.check(basic('alice', 'new-pw'), 'c')).toMatchObject({
      ok: false,
      reason: 'unknown-user',
    });
  });

  it('limits an address after maxFailures until its window ends, without hashing', async () => {
    const auth = new Authenticator(directory, { now, maxFailures: 3, failureWindowMs: 60_000 });
    for (let i = 0; i < 3; i++) {
      expect((await auth.check(basic('alice', `guess${i}`), '10.0.0.1')).ok).toBe(false);
      clock += 1000;
    }
    expect(auth.trackedClients).toBe(1);
    const hashes = auth.counters.hashChecks;
    expect(await auth.check(basic('alice', 'guess3'), '10.0.0.1')).toEqual({
      ok: false,
      reason: 'rate-limited',
      retryAfterSeconds: 57,
      user: 'alice',
    });
    // Even the right password needs a hash, so it waits too.
    expect(await auth.check(basic('alice', 'alice-pw'), '10.0.0.1')).toMatchObject({
      reason: 'rate-limited',
    });
    expect(auth.counters.hashChecks).toBe(hashes);
    expect(auth.counters.rateLimited).toBe(2);
    // Other addresses are unaffected.
    expect((await auth.check(basic('alice', 'alice-pw'), '10.0.0.2')).ok).toBe(true);

    clock += 57_000;
    expect(await auth.check(basic('bob', 'nope'), '10.0.0.1')).toMatchObject({
      reason: 'wrong-password',
    });
    expect(auth.trackedClients).toBe(1);
  });

  it('accepts a cached correct user from a limited address', async () => {
    const auth = new Authenticator(directory, { now, maxFailures: 2 });
    expect((await auth.check(basic('alice', 'alice-pw'), '192.0.2.1')).ok).toBe(true);
    await auth.check(basic('bob', 'x'), '192.0.2.1');
    await auth.check(basic('bob', 'y'), '192.0.2.1');
    expect(await auth.check(basic('bob', 'bob:pw:with:colons'), '192.0.2.1')).toMatchObject({
      reason: 'rate-limited',
    });
    expect(await auth.check(basic('alice', 'alice-pw'), '192.0.2.1')).toEqual({
      ok: true,
      user: 'alice',
      role: 'read',
    });
  });

  it('does not reset the failure count on a success', async () => {
    const auth = new Authenticator(directory, { now, maxFailures: 3 });
    await auth.check(basic('alice', 'x'), 'a');
    await auth.check(basic('alice', 'y'), 'a');
    expect((await auth.check(basic('bob', 'bob:pw:with:colons'), 'a')).ok).toBe(true);
    await auth.check(basic('alice', 'z'), 'a');
    expect(await auth.check(basic('alice', 'w'), 'a')).toMatchObject({ reason: 'rate-limited' });
  });

  it('tracks at most maxTrackedClients addresses, however many fail', async () => {
    // The cheapest hash there is: this is about the table, with 50,000 checks.
    const hash = await hashPassword('alice-pw', { logN: 1, r: 1, p: 1 });
    users.set('alice', { name: 'alice', role: 'read', hash });
    const auth = new Authenticator(directory, {
      now,
      maxTrackedClients: 1000,
      maxConcurrentHashes: 8,
    });
    let most = 0;
    for (let batch = 0; batch < 50_000; batch += 40) {
      const checks: Promise<unknown>[] = [];
      for (let i = batch; i < batch + 40; i++) {
        // One /64 each: addresses within a /64 count as one client.
        checks.push(
          auth.check(
            basic('alice', 'wrong'),
            `2001:db8:${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}::1`,
          ),
        );
      }
      await Promise.all(checks);
      most = Math.max(most, auth.trackedClients);
    }
    expect(auth.counters.failures).toBe(50_000);
    expect(most).toBe(1000);
    expect(auth.trackedClients).toBe(1000);
  }, 60_000);

  it('refuses at once, without hashing, when the hash queue is full', async () => {
    const auth = new Authenticator(directory, {
      now,
      maxConcurrentHashes: 1,
      maxQueuedHashes: 2,
    });
    // Different passwords, from different addresses: nothing shared, nothing limited.
    const outcomes = await Promise.all(
      ['a', 'b', 'c', 'd', 'e'].map((client) =>
        auth.check(basic('alice', `guess-${client}`), client),
      ),
    );
    expect(outcomes.map((o) => (o.ok ? 'ok' : o.reason))).toEqual([
      'wrong-password',
      'wrong-password',
      'wrong-password',
      'busy',
      'busy',
    ]);
    expect(outcomes[3]).toMatchObject({ retryAfterSeconds: 1, user: 'alice' });
    expect(auth.counters).toMatchObject({ hashChecks: 3, rateLimited: 2, failures: 3 });
    // The queue drained: the next check runs.
    expect((await auth.check(basic('alice', 'alice-pw'), 'f')).ok).toBe(true);
    expect(auth.counters.hashChecks).toBe(4);
  });

  it('addresses that logged in lately are served first; names make no difference', async () => {
    const auth = new Authenticator(directory, { now, maxConcurrentHashes: 1, maxQueuedHashes: 2 });
    // A judging machine that was working: its address has a recent success.
    expect((await auth.check(basic('alice', 'alice-pw'), '198.51.100.1')).ok).toBe(true);
    const order: string[] = [];
    const track = (label: string, p: Promise<AuthOutcome>) =>
      p.then((o) => {
        order.push(`${label}:${o.ok ? 'ok' : o.reason}`);
      });
    const spray = ['n1', 'n2', 'n3', 'n4'].map((n, i) =>
      track(n, auth.check(basic(`nobody-${n}`, 'x'), `192.0.2.${i}`)),
    );
    // After the spray has filled the common queue: a real name from a new
    // address is answered as a made-up one is (no hint that it exists)...
    const stranger = track('bob@new', auth.check(basic('bob', 'a-guess'), '192.0.2.9'));
    // ...and the known address waits in its own queue, served first.
    const machine = track(
      'bob@known',
      auth.check(basic('bob', 'bob:pw:with:colons'), '198.51.100.1'),
    );
    await Promise.all([...spray, stranger, machine]);
    expect(order).toEqual([
      'n4:busy',
      'bob@new:busy',
      'n1:unknown-user',
      'bob@known:ok',
      'n2:unknown-user',
      'n3:unknown-user',
    ]);
  });

  it('counts an IPv6 client by its /64, and IPv4-mapped addresses as IPv4', () => {
    expect(clientKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8:1:2:ffff:ffff:ffff:fffe')).toBe('2001:db8:1:2::/64');
    expect(clientKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(clientKey('::1')).toBe('0:0:0:0::/64');
    expect(clientKey('::ffff:203.0.113.9')).toBe('203.0.113.9');
    expect(clientKey('203.0.113.9')).toBe('203.0.113.9');
    expect(clientKey('::FFFF:203.0.113.9')).toBe('203.0.113.9');
    expect(clientKey('2001:DB8:1:2::1')).toBe('2001:db8:1:2::/64');
  });

  it('the same credentials at the same moment share one check', async () => {
    const auth = new Authenticator(directory, { now, maxQueuedHashes: 2 });
    const outcomes = await Promise.all(
      Array.from({ length: 20 }, (_, i) => auth.check(basic('alice', 'alice-pw'), `10.0.0.${i}`)),
    );
    expect(outcomes.every((o) => o.ok)).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 1, rateLimited: 0 });
    // Wrong ones share too, and each still counts against its address.
    const wrong = await Promise.all(
      Array.from({ length: 5 }, () => auth.check(basic('alice', 'nope'), '10.9.9.9')),
    );
    expect(wrong.every((o) => !o.ok && o.reason === 'wrong-password')).toBe(true);
    expect(auth.counters).toMatchObject({ hashChecks: 2, failures: 5 });
  });

  it('exports its counters, the tracked addresses and the users as metrics', async () => {
    const dir = await makeTempDir();
    const path = join(dir.path, 'users');
    try {
      await writeUsersFile(path, `alice:read:${users.get('alice')?.hash}\n`);
      const users2 = await UserDirectory.open(path, memoryLogger().logger);
      const auth = new Authenticator(users2, { now });
      await auth.check(basic('alice', 'alice-pw'), 'a');
      await auth.check(basic('alice', 'alice-pw'), 'a');
      await auth.check(basic('alice', 'nope'), 'b');
      const registry = new Registry();
      registerAuthMetrics(registry, auth, users2);
      const text = await registry.metrics();
      users2.close();
      expect(text).toMatch(/^s3dedup_auth_password_checks_total 2$/m);
      expect(text).toMatch(/^s3dedup_auth_cache_hits_total 1$/m);
      expect(text).toMatch(/^s3dedup_auth_failures_total 1$/m);
      expect(text).toMatch(/^s3dedup_auth_rate_limited_total 0$/m);
      expect(text).toMatch(/^s3dedup_auth_tracked_clients 1$/m);
      expect(text).toMatch(/^s3dedup_auth_users 1$/m);
    } finally {
      await dir.remove();
    }
  });
});
