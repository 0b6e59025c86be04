import type { Command } from 'commander';
import type { Config } from '../config/schema.js';
import { StartupError } from '../errors.js';
import { createLogger, type Logger } from '../observability/logger.js';
import { type LiveSetup, startServer } from '../server.js';
import { type ConfigFlags, configOrExit, withConfigOptions } from './config-options.js';

export function registerServerCommand(program: Command): void {
  withConfigOptions(
    program.command('server').description('serve the Filetracker v2 protocol (at / and under /ft)'),
  ).action((flags: ConfigFlags) => serve(flags));
}

/**
 * Runs the server until SIGTERM or SIGINT (then shuts down gracefully);
 * `live` (from `live-migrate`) builds a live migration from the configuration.
 */
export async function serve(
  flags: ConfigFlags,
  /** A live migration's setup, checked before the server starts (a StartupError stops it). */
  live?: (config: Config, logger: Logger) => Promise<LiveSetup>,
): Promise<void> {
  const config = configOrExit(flags);
  // Listening before anything starts: with no listener, a SIGTERM sent the
  // moment the "listening" line appears (a supervisor, the tests) met the
  // default action and killed the process. One that comes during start-up
  // is kept and acted on once the server is up.
  let pending: string | undefined;
  let onSignal = (signal: string) => {
    pending = signal;
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));
  const logger = await createLogger({ level: config.LOG_LEVEL, json: config.LOG_JSON });
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, logger, live ? { live: await live(config, logger) } : {});
  } catch (err) {
    if (err instanceof StartupError) logger.fatal(err.message);
    else logger.fatal({ err }, 'could not start');
    process.exitCode = 1;
    return;
  }
  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down: finishing in-flight requests');
    server.close().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err: unknown) => {
        logger.error({ err }, 'unclean shutdown');
        process.exit(1);
      },
    );
  };
  onSignal = shutdown;
  if (pending !== undefined) shutdown(pending);
}
