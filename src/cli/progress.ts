import type { Logger } from '../observability/logger.js';

export interface Progress {
  /** `done` more items handled, `bytes` more bytes moved. */
  tick(done?: number, bytes?: number): void;
  stop(): void;
}

/** Milliseconds between progress log lines when standard error is not a terminal. */
const LOG_EVERY_MS = 10_000;

/**
 * Progress of a long job: a bar on a terminal (standard error) with the
 * rate and the time left, a log line every ten seconds otherwise (a cron
 * job's or a container's log). `total` may be an estimate; without one the
 * count alone is shown. The bar's library is loaded only for a terminal:
 * every module the CLI loads also sits in the server's memory.
 */
export async function progress(label: string, logger: Logger, total?: number): Promise<Progress> {
  let done = 0;
  let bytes = 0;
  const started = Date.now();
  const rate = () => (done / Math.max((Date.now() - started) / 1000, 0.001)).toFixed(0);
  if (process.stderr.isTTY) {
    const { SingleBar } = await import('cli-progress');
    const bar = new SingleBar({
      format: total
        ? `${label} [{bar}] {percentage}% {value}/{total} {size} {rate}/s {eta_formatted} left`
        : `${label} {value} {size} {rate}/s`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 100,
    });
    bar.start(total ?? 0, 0, { size: '', rate: '0' });
    return {
      tick: (n = 1, b = 0) => {
        done += n;
        bytes += b;
        if (total !== undefined && done > total) bar.setTotal(done);
        bar.update(done, { size: bytes > 0 ? humanBytes(bytes) : '', rate: rate() });
      },
      stop: () => bar.stop(),
    };
  }
  let last = Date.now();
  return {
    tick: (n = 1, b = 0) => {
      done += n;
      bytes += b;
      if (Date.now() - last >= LOG_EVERY_MS) {
        last = Date.now();
        logger.info({ done, total, bytes, perSecond: Number(rate()) }, label);
      }
    },
    stop: () => {},
  };
}

/** 1536 -> "1.5 KiB". */
export function humanBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}
