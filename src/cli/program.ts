// The s3dedup command line, loaded by src/cli/main.ts once the memory
// settings are in place.
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerCleanupCommand } from './cleanup.js';
import { registerFsckCommand } from './fsck.js';
import { registerMigrationCommands } from './migrate.js';
import { registerServerCommand } from './server.js';
import { registerStatsCommand } from './stats.js';
import { registerUserCommands } from './user.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command('s3dedup')
  .description('Filetracker-compatible file server that stores every distinct content once')
  .version(pkg.version)
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

registerServerCommand(program);
registerCleanupCommand(program);
registerFsckCommand(program);
registerStatsCommand(program);
registerMigrationCommands(program);
registerUserCommands(program);

await program.parseAsync(process.argv);
