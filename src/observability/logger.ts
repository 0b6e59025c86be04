import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines for log collectors (LOG_JSON=true), otherwise human-readable
 * lines. Pretty printing runs in-process and synchronously: no worker thread,
 * and nothing is lost when the process exits right after logging. It is loaded
 * only when used: it costs about 10 MB of resident memory.
 */
export async function createLogger(options: {
  level: string;
  json: boolean;
  /** Commands whose output is on standard output log to standard error. */
  stderr?: boolean;
}): Promise<Logger> {
  const base = {
    level: options.level,
    base: { pid: process.pid },
    // Nothing logs request headers today; should a future line log one, the
    // credentials in it still never reach the log (SPEC §8).
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'authorization'],
      censor: '[redacted]',
    },
  };
  const fd = options.stderr ? 2 : 1;
  if (options.json) return pino(base, pino.destination({ fd, sync: true }));
  const { default: pretty } = await import('pino-pretty');
  const tty = (options.stderr ? process.stderr : process.stdout).isTTY;
  return pino(
    base,
    pretty({ sync: true, colorize: tty, translateTime: 'SYS:standard', destination: fd }),
  );
}
