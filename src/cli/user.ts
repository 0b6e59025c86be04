import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';
import { type Command, Option } from 'commander';
import { hashPassword } from '../auth/password.js';
import {
  isRole,
  parseUsers,
  ROLES,
  readUsersText,
  removeUser,
  setUser,
  UsersFileError,
  userNameProblem,
  writeUsersFile,
} from '../auth/users-file.js';
import { EXIT } from './command.js';
import { type ConfigFlags, configOrExit, withConfigOptions } from './config-options.js';

/** Stops the command with a message on standard error and `code`. */
class Refusal extends Error {
  constructor(
    message: string,
    readonly code: number,
  ) {
    super(message);
  }
}

const EXIT_CODES = `\nExit codes: ${EXIT.ok} done, ${EXIT.failed} the users file could not be read or written (or, for remove, has no such user), ${EXIT.usage} bad usage or configuration (AUTH_USERS_FILE unset).\n`;

export function registerUserCommands(program: Command): void {
  const user = program
    .command('user')
    .description(
      'manage the users of AUTH_USERS_FILE, whose HTTP Basic credentials the server then requires (a running server sees changes within a second)',
    );

  withConfigOptions(
    user
      .command('add')
      .description(
        'add a user, or replace its role and password; the password is asked on a terminal, else read as the first line of standard input',
      )
      .argument('<name>', '1 to 64 characters of A-Z a-z 0-9 . _ @ -')
      .addOption(
        new Option('--role <role>', 'read: GET, HEAD and list; write: everything')
          .choices(ROLES)
          .makeOptionMandatory(),
      ),
  )
    .addHelpText('after', EXIT_CODES)
    .action((name: string, flags: ConfigFlags & { role: string }) =>
      run(flags, (file) => add(file, name, flags.role)),
    );

  withConfigOptions(
    user.command('remove').description('remove a user').argument('<name>', 'the user to remove'),
  )
    .addHelpText('after', EXIT_CODES)
    .action((name: string, flags: ConfigFlags) => run(flags, (file) => remove(file, name)));

  withConfigOptions(user.command('list').description('print each user and its role'))
    .addHelpText('after', EXIT_CODES)
    .action((flags: ConfigFlags) => run(flags, list));
}

/** Runs a user command on AUTH_USERS_FILE from the configuration, as the server reads it. */
async function run(flags: ConfigFlags, command: (file: string) => Promise<void>): Promise<void> {
  const config = configOrExit(flags);
  const file = config.AUTH_USERS_FILE;
  try {
    if (!file) {
      throw new Refusal(
        'AUTH_USERS_FILE is not set: name the users file in the environment or the --config file',
        EXIT.usage,
      );
    }
    await command(file);
    process.exitCode = EXIT.ok;
  } catch (err) {
    if (err instanceof Refusal) {
      process.stderr.write(`s3dedup: ${err.message}\n`);
      process.exitCode = err.code;
    } else if (err instanceof UsersFileError) {
      process.stderr.write(`s3dedup: ${err.message}\n`);
      process.exitCode = EXIT.failed;
    } else {
      process.stderr.write(`s3dedup: ${file}: ${(err as Error).message}\n`);
      process.exitCode = EXIT.failed;
    }
  }
}

async function add(file: string, name: string, role: string): Promise<void> {
  const problem = userNameProblem(name);
  if (problem) throw new Refusal(problem, EXIT.usage);
  // commander checks the choices; this narrows the type.
  if (!isRole(role)) throw new Refusal(`unknown role ${role}`, EXIT.usage);
  // A broken file is refused before anyone types a password for it.
  parseUsers(await readUsersText(file, true), file);
  const password = await readPassword();
  if (password === '') throw new Refusal('empty password refused', EXIT.usage);
  const hash = await hashPassword(password);
  // Read again: the file may have changed while the password was typed.
  const next = setUser(await readUsersText(file, true), { name, role, hash }, file);
  await writeUsersFile(file, next.text);
  process.stdout.write(`${next.replaced ? 'updated' : 'added'} ${name} (${role})\n`);
}

async function remove(file: string, name: string): Promise<void> {
  const next = removeUser(await readUsersText(file), name, file);
  if (!next.removed) throw new Refusal(`no user ${name} in ${file}`, EXIT.failed);
  await writeUsersFile(file, next.text);
  process.stdout.write(`removed ${name}\n`);
}

async function list(file: string): Promise<void> {
  const users = [...parseUsers(await readUsersText(file), file).values()];
  const width = Math.max(0, ...users.map((u) => u.name.length));
  process.stdout.write(users.map((u) => `${u.name.padEnd(width)}  ${u.role}\n`).join(''));
}

/** On a terminal: asked twice, not echoed. Otherwise: the first line of standard input. */
async function readPassword(): Promise<string> {
  if (!process.stdin.isTTY) return firstLine();
  // readline echoes what is typed to its output; this output swallows it.
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: silent, terminal: true });
  rl.on('SIGINT', () => {
    rl.close();
    process.stderr.write('\n');
    process.exit(130);
  });
  // The iterator queues lines, so two pasted at once both arrive.
  const lines = rl[Symbol.asyncIterator]();
  const ask = async (prompt: string) => {
    process.stderr.write(prompt);
    const line = await lines.next();
    process.stderr.write('\n');
    return line.done ? '' : line.value;
  };
  try {
    const first = await ask('Password: ');
    if (first === '') return first;
    const second = await ask('Password again: ');
    if (first !== second) throw new Refusal('the passwords differ', EXIT.usage);
    return first;
  } finally {
    rl.close();
  }
}

async function firstLine(): Promise<string> {
  const lines = createInterface({ input: process.stdin, crlfDelay: Number.POSITIVE_INFINITY });
  for await (const line of lines) return line;
  return '';
}
