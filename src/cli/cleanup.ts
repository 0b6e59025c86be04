import type { Command } from 'commander';
import { createCleaner } from '../cleaner/cleaner.js';
import { EXIT, refuseBesideServer, runWithBackends } from './command.js';
import { type ConfigFlags, withConfigOptions } from './config-options.js';
import { progress } from './progress.js';

/** Another instance's cleaner holds the lock: this run did nothing. */
const EXIT_BUSY = 3;

export function registerCleanupCommand(program: Command): void {
  withConfigOptions(
    program
      .command('cleanup')
      .description(
        'run the cleaner once, now: delete blobs unreferenced for longer than CLEANER_GRACE, objects under the blob layout without metadata (left by crashed uploads) and unfinished uploads older than that, at most CLEANER_MAX_DELETES objects',
      )
      .option('--dry-run', 'list what would be deleted (kind, key, bytes), delete nothing')
      .option(
        '--offline',
        'the server is stopped (needed with LOCKS_TYPE=memory, whose locks cannot reach a running server)',
      ),
  )
    .addHelpText(
      'after',
      `\nExit codes: ${EXIT.ok} done (also when there was nothing to delete), ${EXIT.failed} failed (a backend error ended the run; nothing more was deleted), ${EXIT.usage} bad usage or configuration, ${EXIT_BUSY} another instance is cleaning (nothing done).\n`,
    )
    .action((flags: ConfigFlags & { dryRun?: boolean; offline?: boolean }) =>
      runWithBackends(flags, async ({ config, logger, backends }) => {
        const dryRun = flags.dryRun ?? false;
        const refusal = dryRun ? null : refuseBesideServer(config, flags.offline);
        if (refusal) {
          process.stderr.write(`s3dedup cleanup: ${refusal}\n`);
          return EXIT.usage;
        }
        // Deletions counted as they go: how many there will be is not known up front.
        const bar = await progress(dryRun ? 'would delete' : 'deleted', logger);
        const report = await createCleaner(config, backends, logger)
          .run({
            dryRun,
            onItem: (item) => {
              if (dryRun) process.stdout.write(`${item.kind}\t${item.key}\t${item.size}\n`);
              bar.tick();
            },
          })
          .finally(() => bar.stop());
        if (!report.ran) {
          process.stdout.write('another instance is cleaning; nothing done\n');
          return EXIT_BUSY;
        }
        const verb = dryRun ? 'would delete' : 'deleted';
        process.stdout.write(
          `${verb} ${report.deletedBlobs} unreferenced blobs and ${report.deletedOrphans} objects without metadata (${report.freedBytes} bytes)` +
            (dryRun ? '' : `, removed ${report.staleUploads} unfinished uploads`) +
            (report.limited
              ? `; stopped at CLEANER_MAX_DELETES (${config.CLEANER_MAX_DELETES}), more may be left`
              : '') +
            '\n',
        );
        return EXIT.ok;
      }),
    );
}
