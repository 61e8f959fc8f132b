import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';
import { isData, outputFormat, printData } from './output-format.js';
import { loadConfig } from '../config/load.js';
import type { GcResult } from '../reconcile/gc-run.js';
import { runGc } from '../reconcile/gc-run.js';
import { formatBytes } from './output.js';
import { withWriteTarget } from './target.js';

export function registerGc(program: Command): void {
  program
    .command('gc')
    .description('free space in the store: old versions and archives; never the current, serving, previous (rollback), held or target version')
    .option('--dry-run', 'only show what would be removed')
    .option('--all', 'remove every unprotected version and every archive nothing needs (default: only enough to get under store.capBytes)')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('gc'))
    .action(async (opts: { dryRun?: boolean; all?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const dryRun = opts.dryRun ?? false;
      const r = await withWriteTarget(config, 'modeld gc', async (t) =>
        t.kind === 'daemon'
          ? t.client.call<GcResult>('POST', '/v1/gc', { dryRun, all: opts.all ?? false })
          : runGc(t.deps, { dryRun, all: opts.all ?? false }),
      );
      if (isData(format)) return printData(format, r);
      const verb = dryRun ? 'would remove' : 'removed';
      for (const v of r.removeVersions) process.stdout.write(`${verb} version ${v.namespace}/${v.name} ${v.version} (${formatBytes(v.bytes)})\n`);
      for (const b of r.removeBlobs) process.stdout.write(`${verb} archive sha256:${b.sha256} (${formatBytes(b.bytes)})\n`);
      process.stdout.write(
        `${dryRun ? 'would free' : 'freed'} ${formatBytes(r.freedBytes)}; store ${formatBytes(r.totalBefore)} -> ${formatBytes(r.totalAfter)} (cap ${formatBytes(r.capBytes)})${r.overCap ? ', still over the cap: only protected content left' : ''}\n`,
      );
    });
}
