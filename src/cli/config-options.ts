import type { Command } from 'commander';
import { ConfigError, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { VARIABLE_NAMES, VARIABLES } from '../config/schema.js';

export interface ConfigFlags {
  config?: string;
  env?: boolean;
}

/** Adds --config/--env and a help section listing every variable. */
export function withConfigOptions(command: Command): Command {
  const width = Math.max(...VARIABLE_NAMES.map((n) => n.length));
  const lines = VARIABLE_NAMES.map((name) => {
    const spec: { doc: string; default?: unknown } = VARIABLES[name];
    const def = spec.default === undefined ? '' : ` [default: ${String(spec.default)}]`;
    return `  ${name.padEnd(width)}  ${spec.doc}${def}`;
  });
  return command
    .option(
      '--config <file>',
      'JSON file of VARIABLE: value pairs; environment variables override it',
    )
    .option(
      '--env',
      'take the configuration from environment variables alone (the default without --config)',
    )
    .addHelpText(
      'after',
      `\nConfiguration variables (environment or --config file):\n${lines.join('\n')}\n`,
    );
}

/** Loads the configuration or exits with status 2 and a message naming what is wrong. */
export function configOrExit(flags: ConfigFlags): Config {
  if (flags.config && flags.env) {
    process.stderr.write('s3dedup: use either --config FILE or --env, not both\n');
    process.exit(2);
  }
  try {
    return loadConfig({ file: flags.config, env: process.env });
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`s3dedup: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}
