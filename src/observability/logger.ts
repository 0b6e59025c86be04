import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines for log collectors (LOG_JSON=true), otherwise human-readable
 * lines. Pretty printing runs in-process and synchronously: no worker thread,
 * and nothing is lost when the process exits right after logging. It is loaded
 * only when used: it costs about 10 MB of resident memory.
 */
export async function createLogger(options: { level: string; json: boolean }): Promise<Logger> {
  const base = { level: options.level, base: { pid: process.pid } };
  if (options.json) return pino(base);
  const { default: pretty } = await import('pino-pretty');
  return pino(
    base,
    pretty({ sync: true, colorize: process.stdout.isTTY, translateTime: 'SYS:standard' }),
  );
}
