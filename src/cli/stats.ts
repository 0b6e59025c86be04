import type { Command } from 'commander';
import { storeStats } from '../stats/stats.js';
import { EXIT, runWithBackends } from './command.js';
import { type ConfigFlags, withConfigOptions } from './config-options.js';
import { humanBytes } from './progress.js';

export function registerStatsCommand(program: Command): void {
  withConfigOptions(
    program
      .command('stats')
      .description(
        'print files, distinct contents, logical and stored bytes, dedup ratio and savings',
      )
      .option('--json', 'print them as JSON'),
  )
    .addHelpText(
      'after',
      `\nExit codes: ${EXIT.ok} printed, ${EXIT.failed} a backend failed, ${EXIT.usage} bad usage or configuration.\n`,
    )
    .action((flags: ConfigFlags & { json?: boolean }) =>
      runWithBackends(flags, async ({ backends }) => {
        const s = await storeStats(backends.meta);
        if (flags.json) {
          process.stdout.write(`${JSON.stringify(s, null, 2)}\n`);
          return EXIT.ok;
        }
        const rows: [string, string][] = [
          ['files', String(s.files)],
          ['distinct contents', `${s.blobs}`],
          [
            'logical bytes',
            `${s.logicalBytes} (${humanBytes(s.logicalBytes)}, as clients see them)`,
          ],
          ['unique logical bytes', `${s.uniqueLogicalBytes} (${humanBytes(s.uniqueLogicalBytes)})`],
          [
            'stored bytes',
            `${s.storedBytes} (${humanBytes(s.storedBytes)}, compressed, in the blob store)`,
          ],
          ['dedup ratio', s.dedupRatio.toFixed(2)],
          ['savings', `${(s.savings * 100).toFixed(1)}% (${humanBytes(s.bytesSaved)} not stored)`],
        ];
        const width = Math.max(...rows.map(([k]) => k.length));
        process.stdout.write(`${rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n')}\n`);
        return EXIT.ok;
      }),
    );
}
