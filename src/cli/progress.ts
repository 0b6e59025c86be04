import { SingleBar } from 'cli-progress';
import type { Logger } from '../observability/logger.js';

export interface Progress {
  /** `done` more items handled. */
  tick(done?: number): void;
  stop(): void;
}

/** Seconds between progress log lines when standard error is not a terminal. */
const LOG_EVERY_MS = 10_000;

/**
 * Progress of a long job: a bar on a terminal (standard error), a log line
 * every ten seconds otherwise (a cron job's or a container's log). `total`
 * may be an estimate; without one the count alone is shown.
 */
export function progress(label: string, logger: Logger, total?: number): Progress {
  let done = 0;
  if (process.stderr.isTTY) {
    const bar = new SingleBar({
      format: total
        ? `${label} [{bar}] {percentage}% {value}/{total} {eta_formatted} left`
        : `${label} {value}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 100,
    });
    bar.start(total ?? 0, 0);
    return {
      tick: (n = 1) => {
        done += n;
        if (total !== undefined && done > total) bar.setTotal(done);
        bar.update(done);
      },
      stop: () => bar.stop(),
    };
  }
  let last = Date.now();
  return {
    tick: (n = 1) => {
      done += n;
      if (Date.now() - last >= LOG_EVERY_MS) {
        last = Date.now();
        logger.info({ done, total }, label);
      }
    },
    stop: () => {},
  };
}
