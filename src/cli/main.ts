#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerServerCommand } from './server.js';

const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

const program = new Command('s3dedup')
  .description('Filetracker-compatible file server that stores every distinct content once')
  .version(pkg.version)
  .showHelpAfterError()
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2));

registerServerCommand(program);

await program.parseAsync(process.argv);
