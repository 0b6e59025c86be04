import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { AppError } from '../errors.js';
import type { MetaStore } from '../metastore/port.js';
import { type MigrationReport, migrate } from '../migration/migrate.js';
import type { OldFiletrackerServer } from '../migration/old-http.js';
import { everyFile, type OldStore } from '../migration/source.js';
import { V1Directory } from '../migration/v1-directory.js';
import type { Logger } from '../observability/logger.js';
import type { LiveSetup } from '../server.js';
import { createService } from '../server.js';
import { storeStats } from '../stats/stats.js';
import { type CommandContext, EXIT, runWithBackends } from './command.js';
import { type ConfigFlags, configOrExit, withConfigOptions } from './config-options.js';
import { humanBytes, progress } from './progress.js';
import { serve } from './server.js';

interface MigrateFlags extends ConfigFlags {
  filetrackerUrl?: string;
  v1Directory?: string;
  maxConcurrency: number;
  fileList?: string;
  proxyOnly?: boolean;
}

const concurrency = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 1000) throw new Error('a whole number from 1 to 1000');
  return n;
};

const EXIT_CODES = `\nExit codes: ${EXIT.ok} every file migrated or already here, ${EXIT.failed} some files failed (listed in the summary) or the migration could not run, ${EXIT.usage} bad usage or configuration.\n`;

/** `migrate`, `migrate-v1`, `live-migrate`, `live-migrate-v1` (SPEC §5, §7), with the upstream's flags. */
export function registerMigrationCommands(program: Command): void {
  withConfigOptions(
    program
      .command('migrate')
      .description(
        'copy every file of a V2 Filetracker server, with its version, into this store; files already here with the same or a newer version are skipped, so a rerun finishes an interrupted migration',
      )
      .option('--filetracker-url <url>', 'the old Filetracker server (default: FILETRACKER_URL)')
      .option('--max-concurrency <n>', 'files copied at the same time', concurrency, 10)
      .option('--file-list <file>', 'copy only these paths, one per line'),
  )
    .addHelpText('after', EXIT_CODES)
    .action((flags: MigrateFlags) =>
      runWithBackends(flags, async (context) => {
        const url = flags.filetrackerUrl ?? context.config.FILETRACKER_URL;
        if (!url) return usage('migrate needs --filetracker-url or FILETRACKER_URL');
        const source = await oldServer({ url });
        try {
          await source.checkV2();
          const paths = flags.fileList
            ? () => linesOf(flags.fileList as string)
            : () => everyFile(source);
          return await migrateOffline(context, source, paths, flags.maxConcurrency);
        } finally {
          await source.close();
        }
      }),
    );

  withConfigOptions(
    program
      .command('migrate-v1')
      .description(
        'copy every file of a V1 Filetracker storage folder (DIR/files/<path>, raw content, the file time as version) into this store; reruns skip what is already here',
      )
      .option('--v1-directory <dir>', 'the V1 storage folder (default: FILETRACKER_V1_DIR)')
      .option('--max-concurrency <n>', 'files copied at the same time', concurrency, 10),
  )
    .addHelpText('after', EXIT_CODES)
    .action((flags: MigrateFlags) =>
      runWithBackends(flags, async (context) => {
        const dir = flags.v1Directory ?? context.config.FILETRACKER_V1_DIR;
        if (!dir) return usage('migrate-v1 needs --v1-directory or FILETRACKER_V1_DIR');
        const source = new V1Directory(dir);
        await source.check();
        return migrateOffline(context, source, () => source.list(''), flags.maxConcurrency);
      }),
    );

  withConfigOptions(
    program
      .command('live-migrate')
      .description(
        'serve as `server` does while migrating from a V2 Filetracker: files not here yet are read from it (and copied in), PUT and DELETE go to both, /list merges both, and a background copy brings everything over',
      )
      .option('--filetracker-url <url>', 'the old Filetracker server (default: FILETRACKER_URL)')
      .option('--max-concurrency <n>', 'files the background copy handles at once', concurrency, 10)
      .option('--proxy-only', 'no background copy: files come over only when read')
      .option('--file-list <file>', 'the background copy takes only these paths, one per line'),
  ).action((flags: MigrateFlags) => {
    const config = configOrExit(flags);
    const url = flags.filetrackerUrl ?? config.FILETRACKER_URL;
    if (!url) {
      usage('live-migrate needs --filetracker-url or FILETRACKER_URL');
      return;
    }
    if (flags.proxyOnly && flags.fileList) {
      usage('use either --proxy-only or --file-list');
      return;
    }
    return serve(flags, async (_config, logger): Promise<LiveSetup> => {
      const source = await oldServer({ url });
      await checkOldServer(source, logger);
      const paths = flags.fileList
        ? () => linesOf(flags.fileList as string)
        : () => everyFile(source);
      return {
        source,
        background: flags.proxyOnly ? null : { paths, source },
        concurrency: flags.maxConcurrency,
      };
    });
  });

  withConfigOptions(
    program
      .command('live-migrate-v1')
      .description(
        'serve as `server` does while migrating from V1: files not here yet are read from the V1 HTTP server (--filetracker-url) or else the V1 folder, and the folder (--v1-directory) is copied in the background',
      )
      .option('--v1-directory <dir>', 'the V1 storage folder (default: FILETRACKER_V1_DIR)')
      .option('--filetracker-url <url>', 'a V1 Filetracker HTTP server to read files from')
      .option(
        '--max-concurrency <n>',
        'files the background copy handles at once',
        concurrency,
        10,
      ),
  ).action((flags: MigrateFlags) => {
    const config = configOrExit(flags);
    const dir = flags.v1Directory ?? config.FILETRACKER_V1_DIR;
    const url = flags.filetrackerUrl;
    if (!dir && !url) {
      usage('live-migrate-v1 needs --v1-directory (or FILETRACKER_V1_DIR) or --filetracker-url');
      return;
    }
    return serve(flags, async (): Promise<LiveSetup> => {
      const folder = dir ? new V1Directory(dir) : null;
      await folder?.check();
      const server = url ? await oldServer({ url, v1: true }) : null;
      const source = (server ?? folder) as OldStore;
      return {
        source,
        background: folder ? { paths: () => folder.list(''), source: folder } : null,
        concurrency: flags.maxConcurrency,
      };
    });
  });
}

/**
 * A server that is not V2 stops the start (a wrong URL is seen at once); one
 * that is down only warns: the server starts, and reads of files not here
 * yet answer 503 until it is back, as they would if it failed later.
 */
async function checkOldServer(source: OldFiletrackerServer, logger: Logger): Promise<void> {
  try {
    await source.checkV2();
  } catch (err) {
    if (!(err instanceof AppError)) {
      await source.close();
      throw err;
    }
    logger.warn({ err: err.message }, 'the old Filetracker does not answer yet: starting anyway');
  }
}

/**
 * A client of the old server. Its module is loaded only when a migration
 * command runs: its HTTP library (undici) would otherwise sit in every
 * server's memory.
 */
async function oldServer(
  options: ConstructorParameters<typeof OldFiletrackerServer>[0],
): Promise<OldFiletrackerServer> {
  const { OldFiletrackerServer } = await import('../migration/old-http.js');
  return new OldFiletrackerServer(options);
}

function usage(message: string): number {
  process.stderr.write(`s3dedup: ${message}\n`);
  process.exitCode = EXIT.usage;
  return EXIT.usage;
}

/** The non-empty lines of a file, streamed; a leading slash is dropped ("/a/b" is "a/b"). */
async function* linesOf(file: string): AsyncIterable<string> {
  const lines = createInterface({
    input: createReadStream(file),
    crlfDelay: Number.POSITIVE_INFINITY,
  });
  for await (const line of lines) {
    const path = line.trim().replace(/^\/+/, '');
    if (path !== '') yield path;
  }
}

/** An offline migration with progress and a summary; exit 0 only when nothing failed. */
async function migrateOffline(
  context: CommandContext,
  source: OldStore,
  paths: () => AsyncIterable<string>,
  maxConcurrency: number,
): Promise<number> {
  const { config, logger, backends } = context;
  // Counted first, so that the bar has a total and an ETA; the listing is cheap next to the copy.
  let total = 0;
  for await (const _ of paths()) total++;
  logger.info({ from: source.name, files: total }, 'migrating');
  const bar = await progress('migrating', logger, total);
  const report = await migrate({
    files: createService(config, backends, logger),
    source,
    paths: paths(),
    concurrency: maxConcurrency,
    attempts: 5,
    backoffMs: 500,
    logger,
    onFile: (_outcome, bytes) => bar.tick(1, bytes),
  }).finally(() => bar.stop());
  process.stdout.write(await summary(report, total, source, backends.meta));
  return report.failed === 0 ? EXIT.ok : EXIT.failed;
}

async function summary(
  r: MigrationReport,
  listed: number,
  source: OldStore,
  meta: MetaStore,
): Promise<string> {
  const s = await storeStats(meta);
  const lines = [
    `from ${source.name}: ${listed} files listed`,
    `copied   ${r.copied} files (${humanBytes(r.bytes)})`,
    `skipped  ${r.skipped} files (already here, same or newer version)`,
    `failed   ${r.failed} files`,
    ...r.failures.map((f) => `  ${f.path}: ${f.reason}`),
    ...(r.failed > r.failures.length
      ? [`  ... and ${r.failed - r.failures.length} more (each logged as it failed)`]
      : []),
    `store now: ${s.files} files, ${s.blobs} distinct contents, dedup ratio ${s.dedupRatio.toFixed(2)}, ${humanBytes(s.storedBytes)} stored for ${humanBytes(s.logicalBytes)} of files (${(s.savings * 100).toFixed(1)}% saved)`,
  ];
  return `${lines.join('\n')}\n`;
}
