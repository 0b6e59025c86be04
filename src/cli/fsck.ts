import type { Command } from 'commander';
import { Fsck, type FsckReport, verdict } from '../fsck/fsck.js';
import { EXIT, refuseBesideServer, runWithBackends } from './command.js';
import { type ConfigFlags, withConfigOptions } from './config-options.js';
import { progress } from './progress.js';

/** fsck's exit codes (README, `s3dedup fsck --help`). */
export const FSCK_EXIT = {
  consistent: 0,
  inconsistent: 1,
  /** 2 is bad usage or configuration, as for every command. */
  usage: 2,
  /** fsck could not finish (a backend failed): nothing is known. */
  failed: 3,
  dataLost: 4,
} as const;

export function registerFsckCommand(program: Command): void {
  withConfigOptions(
    program
      .command('fsck')
      .description(
        "check the store on a live deployment: every path's content is in the bucket, counts match, no orphans; lost content is reported with its paths",
      )
      .option('--deep', 're-read every object and check its content hash and sizes')
      .option(
        '--repair',
        'recount references, correct sizes, remove orphans (as the cleaner would), and give up lost content (its paths are removed, after being reported); never deletes content that paths point at',
      )
      .option('--json', 'print the report as JSON')
      .option(
        '--offline',
        'the server is stopped (needed for --repair with LOCKS_TYPE=memory, whose locks cannot reach a running server)',
      ),
  )
    .addHelpText(
      'after',
      `\nExit codes: ${FSCK_EXIT.consistent} consistent (with --repair: everything found was repaired), ${FSCK_EXIT.inconsistent} inconsistent but no content lost, ${FSCK_EXIT.usage} bad usage or configuration, ${FSCK_EXIT.failed} fsck could not finish (a backend failed), ${FSCK_EXIT.dataLost} content lost (the paths are listed).\n`,
    )
    .action(
      (
        flags: ConfigFlags & {
          deep?: boolean;
          repair?: boolean;
          json?: boolean;
          offline?: boolean;
        },
      ) =>
        runWithBackends(
          flags,
          async ({ config, logger, backends }) => {
            const refusal = flags.repair ? refuseBesideServer(config, flags.offline) : null;
            if (refusal) {
              process.stderr.write(`s3dedup fsck --repair: ${refusal}\n`);
              return EXIT.usage;
            }
            const total = (await backends.meta.totals()).blobs;
            const bar = await progress(
              flags.deep ? 'reading blobs' : 'checking blobs',
              logger,
              total,
            );
            const report = await new Fsck({
              meta: backends.meta,
              blobs: backends.blobs,
              locks: backends.locks,
              keyDepth: config.S3_KEY_SHARDING_DEPTH,
              graceMs: config.CLEANER_GRACE * 1000,
              lockTimeoutMs: config.LOCK_TIMEOUT * 1000,
              deep: flags.deep ?? false,
              repair: flags.repair ?? false,
              onBlob: () => bar.tick(),
            })
              .run()
              .finally(() => bar.stop());
            process.stdout.write(
              flags.json ? `${JSON.stringify(report, null, 2)}\n` : describe(report),
            );
            const v = verdict(report);
            return v === 'data-lost'
              ? FSCK_EXIT.dataLost
              : v === 'inconsistent'
                ? FSCK_EXIT.inconsistent
                : FSCK_EXIT.consistent;
          },
          FSCK_EXIT.failed,
        ),
    );
}

function describe(r: FsckReport): string {
  const lines = [`checked ${r.blobs} blobs and ${r.objects} objects`];
  for (const lost of r.lost) {
    lines.push(
      `LOST ${lost.hash}: ${lost.damage}${lost.detail ? ` (${lost.detail})` : ''}; ${lost.pathCount} paths${lost.dropped ? ', removed' : ''}:`,
    );
    for (const path of lost.paths) lines.push(`  ${path}`);
    if (lost.pathCount > lost.paths.length)
      lines.push(`  ... and ${lost.pathCount - lost.paths.length} more`);
  }
  for (const m of r.miscounted) {
    lines.push(
      `count of ${m.hash} is ${m.refcount}, ${m.paths} paths point at it${m.repaired ? '; recounted' : ''}`,
    );
  }
  for (const m of r.sizeMismatches) {
    lines.push(
      `object of ${m.hash} is ${m.actual} bytes, ${m.recorded} recorded (content checked and right)${m.repaired ? '; corrected' : ''}`,
    );
  }
  if (r.orphanObjects > 0)
    lines.push(`${r.orphanObjects} objects without metadata, older than CLEANER_GRACE`);
  if (r.orphanRows > 0) lines.push(`${r.orphanRows} unreferenced blobs whose object is gone`);
  if (r.orphansRemoved > 0) lines.push(`${r.orphansRemoved} orphans removed`);
  if (r.totalsDrift) {
    const { kept, counted, repaired } = r.totalsDrift;
    const figures = (t: typeof kept) =>
      `${t.files} files, ${t.blobs} blobs, ${t.logicalBytes} logical bytes, ${t.uniqueLogicalBytes} distinct logical bytes, ${t.storedBytes} stored bytes`;
    lines.push(
      `totals kept for /metrics (${figures(kept)}) differ from the blob rows (${figures(counted)})${repaired ? '; corrected' : ''}`,
    );
  }
  const v = verdict(r);
  lines.push(
    v === 'consistent'
      ? 'consistent'
      : v === 'repaired'
        ? 'repaired: consistent now'
        : v === 'inconsistent'
          ? 'inconsistent (nothing lost): run with --repair, or let the cleaner take the orphans'
          : `content lost: ${r.lost.length} blobs, ${r.lost.reduce((n, l) => n + l.pathCount, 0)} paths${r.lost.some((l) => !l.dropped) ? ' (a PUT of the same content restores them)' : ''}`,
  );
  return `${lines.join('\n')}\n`;
}
