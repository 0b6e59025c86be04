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
    process.exitCode = EXIT.failed;
    return;
  }
  try {
    process.exitCode = await command({ config, logger, backends });
  } catch (err) {
    logger.fatal({ err }, 'failed');
    process.exitCode = EXIT.failed;
  } finally {
    await backends.close();
  }
}
