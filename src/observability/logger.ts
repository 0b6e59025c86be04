import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger };

/**
 * JSON lines for log collectors (LOG_JSON=true), otherwise human-readable
 * lines. Pretty printing runs in-process and synchronously: no worker thread,
 * and nothing is lost when the process exits right after logging.
 */
export function createLogger(options: { level: string; json: boolean }): Logger {
  const base = { level: options.level, base: { pid: process.pid } };
  if (options.json) return pino(base);
  return pino(
    base,
    pretty({ sync: true, colorize: process.stdout.isTTY, translateTime: 'SYS:standard' }),
  );
}
