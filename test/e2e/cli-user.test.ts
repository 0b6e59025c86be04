import { spawn, spawnSync } from 'node:child_process';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_SCRYPT, verifyPassword } from '../../src/auth/password.js';
import { readUsersFile } from '../../src/auth/users-file.js';
import { CLI, runCli } from '../support/process.js';
import { makeTempDir } from '../support/tmp.js';

/**
 * util-linux `script` gives the command a terminal. Debian has it in every
 * install (bsdutils is Essential), so a machine without it fails the test
 * rather than skip what it shows.
 */
const hasScript = spawnSync('script', ['--version']).status === 0;

/**
 * Runs the CLI on a terminal, typing each of `typed` once the output ends
 * with a prompt; resolves with everything the terminal showed.
 */
function runOnTerminal(
  args: string[],
  env: Record<string, string>,
  typed: string[],
): Promise<{ code: number | null; screen: string }> {
  return new Promise((resolve) => {
    const command = [CLI, ...args].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qec', command, '/dev/null'], {
      env: { PATH: process.env.PATH ?? '', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    const left = [...typed];
    child.stdout.on('data', (d: Buffer) => {
      screen += d.toString();
      if (/: $/.test(screen) && left.length > 0) child.stdin.write(`${left.shift()}\r`);
    });
    child.on('exit', (code) => {
      child.stdin.end();
      resolve({ code, screen });
    });
  });
}

describe('s3dedup user', () => {
  let dir: { path: string; remove(): Promise<void> };
  let file: string;
  let env: Record<string, string>;
  beforeEach(async () => {
    dir = await makeTempDir();
    file = join(dir.path, 'users');
    env = { AUTH_USERS_FILE: file };
  });
  afterEach(async () => {
    await dir.remove();
  });

  const add = (name: string, role: string, password: string) =>
    runCli(['user', 'add', name, '--role', role], env, `${password}\n`);

  it('adds from standard input, lists names and roles only, updates, removes', async () => {
    const alice = await add('alice', 'read', 'alice secret');
    expect(alice).toMatchObject({ code: 0, stdout: 'added alice (read)\n' });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const first = (await readUsersFile(file)).get('alice');
    expect(first?.hash).toMatch(new RegExp(`^\\$scrypt\\$ln=${DEFAULT_SCRYPT.logN},r=8,p=1\\$`));
    expect(await verifyPassword('alice secret', first?.hash ?? '')).toBe(true);

    // The first line is the password: no trailing newline, nothing after it.
    const bob = await runCli(
      ['user', 'add', 'bob@ci', '--role', 'write'],
      env,
      'bob pw\nignored\n',
    );
    expect(bob).toMatchObject({ code: 0, stdout: 'added bob@ci (write)\n' });
    expect(
      await verifyPassword('bob pw', (await readUsersFile(file)).get('bob@ci')?.hash ?? ''),
    ).toBe(true);

    const list = await runCli(['user', 'list'], env);
    expect(list.code).toBe(0);
    expect(list.stdout).toBe('alice   read\nbob@ci  write\n');
    expect(list.output).not.toContain('$scrypt$');

    const updated = await add('alice', 'write', 'new secret');
    expect(updated).toMatchObject({ code: 0, stdout: 'updated alice (write)\n' });
    const second = (await readUsersFile(file)).get('alice');
    expect(second?.role).toBe('write');
    expect(await verifyPassword('new secret', second?.hash ?? '')).toBe(true);
    expect(await verifyPassword('alice secret', second?.hash ?? '')).toBe(false);

    const removed = await runCli(['user', 'remove', 'alice'], env);
    expect(removed).toMatchObject({ code: 0, stdout: 'removed alice\n' });
    expect((await runCli(['user', 'list'], env)).stdout).toBe('bob@ci  write\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('on a terminal, asks for the password twice without echoing it', async () => {
    expect(hasScript, 'util-linux `script` (Debian package bsdutils) is needed').toBe(true);
    const added = await runOnTerminal(['user', 'add', 'tom', '--role', 'read'], env, [
      'typed secret',
      'typed secret',
    ]);
    expect(added.code).toBe(0);
    expect(added.screen).toMatch(/Password: [\s\S]*Password again: [\s\S]*added tom \(read\)/);
    expect(added.screen).not.toContain('typed secret');
    const tom = (await readUsersFile(file)).get('tom');
    expect(await verifyPassword('typed secret', tom?.hash ?? '')).toBe(true);

    const differ = await runOnTerminal(['user', 'add', 'tom', '--role', 'write'], env, [
      'one',
      'two',
    ]);
    expect(differ.code).toBe(2);
    expect(differ.screen).toMatch(/the passwords differ/);
    expect((await readUsersFile(file)).get('tom')?.hash).toBe(tom?.hash);
  });

  it('keeps comments and blank lines when it rewrites the file', async () => {
    await writeFile(file, '# users of files.example\n\n# CI\n', { mode: 0o644 });
    expect((await add('ci', 'write', 'pw')).code).toBe(0);
    expect((await add('judge', 'read', 'pw')).code).toBe(0);
    expect((await runCli(['user', 'remove', 'ci'], env)).code).toBe(0);
    const text = await readFile(file, 'utf8');
    expect(text).toMatch(/^# users of files\.example\n\n# CI\njudge:read:\$scrypt\$[^\n]+\n$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('refuses an unknown user to remove (1), a bad role or name or an empty password (2), leaving the file as it was', async () => {
    expect((await add('alice', 'read', 'pw')).code).toBe(0);
    const before = await readFile(file, 'utf8');

    const unknown = await runCli(['user', 'remove', 'carol'], env);
    expect(unknown.code).toBe(1);
    expect(unknown.output).toMatch(/no user carol in .*users/);

    const role = await add('alice', 'admin', 'pw');
    expect(role.code).toBe(2);
    expect(role.stderr).toMatch(/'admin' is invalid\. Allowed choices are read, write/);
    expect((await runCli(['user', 'add', 'bob'], env, 'pw\n')).code).toBe(2);

    for (const name of ['bad:name', 'with space', 'x'.repeat(65), 'tab\there']) {
      const bad = await add(name, 'read', 'pw');
      expect(bad.code, name).toBe(2);
      expect(bad.stderr).toMatch(/must be 1 to 64 characters of A-Z a-z 0-9 \. _ @ -/);
    }

    const empty = await runCli(['user', 'add', 'bob', '--role', 'read'], env, '');
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/empty password refused/);
    expect((await add('bob', 'read', '')).code).toBe(2);

    expect(await readFile(file, 'utf8')).toBe(before);
  });

  it('refuses to edit or list a malformed file (1), and says when there is none', async () => {
    await writeFile(file, 'alice:read:plaintext\n');
    const addBad = await add('bob', 'read', 'pw');
    expect(addBad.code).toBe(1);
    expect(addBad.stderr).toMatch(/line 1: user alice: bad password hash: not a \$scrypt\$ hash/);
    expect(addBad.stderr).not.toContain('plaintext');
    expect((await runCli(['user', 'list'], env)).code).toBe(1);
    expect(await readFile(file, 'utf8')).toBe('alice:read:plaintext\n');

    env.AUTH_USERS_FILE = join(dir.path, 'none');
    const list = await runCli(['user', 'list'], env);
    expect(list.code).toBe(1);
    expect(list.output).toMatch(/does not exist/);
    expect((await runCli(['user', 'remove', 'alice'], env)).code).toBe(1);
  });

  it('takes AUTH_USERS_FILE from the configuration, and exits 2 without it', async () => {
    for (const args of [
      ['user', 'list'],
      ['user', 'remove', 'alice'],
    ]) {
      const unset = await runCli(args);
      expect(unset.code).toBe(2);
      expect(unset.output).toMatch(/AUTH_USERS_FILE is not set/);
    }
    const unsetAdd = await runCli(['user', 'add', 'alice', '--role', 'read'], {}, 'pw\n');
    expect(unsetAdd.code).toBe(2);
    expect(unsetAdd.stderr).toMatch(/AUTH_USERS_FILE is not set/);

    const config = join(dir.path, 'config.json');
    await writeFile(config, JSON.stringify({ AUTH_USERS_FILE: file }));
    const fromFile = await runCli(
      ['user', 'add', 'alice', '--role', 'read', '--config', config],
      {},
      'pw\n',
    );
    expect(fromFile).toMatchObject({ code: 0, stdout: 'added alice (read)\n' });
    expect((await runCli(['user', 'list', '--config', config])).stdout).toBe('alice  read\n');
    // Bad configuration is reported as for every command.
    const bad = await runCli(['user', 'list'], { ...env, LISTEN_PORT: 'http' });
    expect(bad.code).toBe(2);
    expect(bad.output).toMatch(/LISTEN_PORT must be a whole number/);
  });
});
