#!/usr/bin/env -S node --max-semi-space-size=2 --expose-gc --no-concurrent-array-buffer-sweeping
// --max-semi-space-size keeps V8's young generation small (2 MB semi-spaces
// instead of up to 16 MB): a streaming server allocates many short-lived
// buffers, and a large young generation only adds resident memory (about
// 20 MB) without making uploads faster. --expose-gc lets the server run minor
// collections paced to the buffers it streams (src/runtime/gc-pacer.ts).
// --no-concurrent-array-buffer-sweeping frees those buffers inside the
// collection instead of in a background task. Measured: 1 GiB GETs relayed
// from S3 ran about 50% faster with it, at the same peak memory; most likely
// because, with a collection every few MiB streamed, each one would wait for
// the previous one's background task, which on a busy machine waits for a
// core. See docs/memory.md.
// First: the shebang's memory settings when started as plain `node dist/cli/main.js`.
import '../runtime/apply-memory-settings.js';
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerCleanupCommand } from './cleanup.js';
import { registerFsckCommand } from './fsck.js';
import { registerMigrationCommands } from './migrate.js';
import { registerServerCommand } from './server.js';
import { registerStatsCommand } from './stats.js';

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

await program.parseAsync(process.argv);
