import type { Logger } from '../observability/logger.js';
import type { Cleaner } from './cleaner.js';

/**
 * Runs the cleaner in the server every `intervalMs`, the first time after
 * at most a minute (so a restart does not postpone it by a whole interval).
 * Runs never overlap; a failed run is logged and counted (by the cleaner)
 * and the next one comes at its time. `stop()` ends a run under way at its
 * next batch and waits for that.
 */
export function scheduleCleaner(
  cleaner: Cleaner,
  intervalMs: number,
  logger: Logger,
): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  let timer: NodeJS.Timeout | undefined;
  const stopping = new AbortController();
  const next = (delayMs: number) => {
    timer = setTimeout(() => {
      running = cleaner
        .run({ signal: stopping.signal })
        .then(
          () => {},
          // Already logged with its cause by the cleaner.
          () => {},
        )
        .finally(() => {
          running = null;
          if (!stopping.signal.aborted) next(intervalMs);
        });
    }, delayMs);
    timer.unref();
  };
  next(Math.min(intervalMs, 60_000));
  logger.info({ intervalMs }, 'cleaner scheduled');
  return {
    stop: async () => {
      stopping.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
