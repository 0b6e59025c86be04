import { type Backends, openBackends } from '../backends.js';
import type { Config } from '../config/schema.js';
import { StartupError } from '../errors.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { type ConfigFlags, configOrExit } from './config-options.js';

/** Exit codes the maintenance commands share (each command documents its own beyond these). */
export const EXIT = {
  ok: 0,
  /** The command could not do its work: a backend failed, or its start-up did. */
  failed: 1,
  /** Bad usage or configuration (commander and configOrExit exit with it). */
  usage: 2,
} as const;

/**
 * With LOCKS_TYPE=memory, locks live inside one process: a command that
 * deletes (cleanup, fsck --repair) cannot exclude the uploads of a server
 * running beside it, so it runs only when told the server is stopped.
 * Returns the message to refuse with, or null.
 */
export function refuseBesideServer(config: Config, offline: boolean | undefined): string | null {
  if (config.LOCKS_TYPE !== 'memory' || offline) return null;
  return 'with LOCKS_TYPE=memory this command cannot exclude the uploads of a running server: stop the server and pass --offline, or let the server run the cleaner (CLEANER_ENABLED), or use LOCKS_TYPE=postgres';
}

export interface CommandContext {
  config: Config;
  logger: Logger;
  backends: Backends;
}

/**
 * Runs a maintenance command: configuration (as the server reads it), a
 * logger on standard error (standard output is the command's own), the
 * configured stores opened and closed again however the command ends. Sets
 * the exit code the command returns, or EXIT.failed when it throws.
 */
export async function runWithBackends(
  flags: ConfigFlags,
  command: (context: CommandContext) => Promise<number>,
  /** The exit code when the command cannot do its work (fsck's differs). */
  failure: number = EXIT.failed,
): Promise<void> {
  const config = configOrExit(flags);
  const logger = await createLogger({
    level: config.LOG_LEVEL,
    json: config.LOG_JSON,
    stderr: true,
  });
  let backends: Backends;
  try {
    backends = await openBackends(config, logger);
  } catch (err) {
    if (err instanceof StartupError) logger.fatal(err.message);
    else logger.fatal({ err }, 'could not open the stores');
    process.exitCode = failure;
    return;
  }
  try {
    process.exitCode = await command({ config, logger, backends });
  } catch (err) {
    logger.fatal({ err }, 'failed');
    process.exitCode = failure;
  } finally {
    await backends.close();
  }
}
