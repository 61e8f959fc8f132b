import type { Command } from 'commander';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { parseRollbackTarget, releaseHold, rollback, type ReleaseResult, type RollbackResult } from '../reconcile/rollback.js';
import { exitCodesHelp } from './exit-codes.js';
import { note } from './output.js';
import { isData, outputFormat, printData } from './output-format.js';
import { withWriteTarget } from './target.js';

export function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description('serve the previous (or a named) installed version instead of the target, until the spec changes or --release')
    .argument('<model>', 'name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace when <model> has none', 'default')
    .option('--to <version>', 'an installed version to serve (default: the previous one); <version>@<digest prefix> picks one build of a republished version')
    .option('--release', 'end the hold: serve the target again')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('rollback'))
    .action(async (ref: string, opts: { namespace: string; to?: string; release?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const { namespace, name } = parseModelRef(ref, opts.namespace);
      if (opts.release && opts.to !== undefined) throw new ModeldError('BadRequest', '--release and --to do not go together');
      if (opts.to !== undefined && !parseRollbackTarget(opts.to)) throw new ModeldError('BadRequest', `--to "${opts.to.slice(0, 80)}" is not a version (or version@digest)`);
      if (opts.release) {
        const r = await withWriteTarget(config, 'modeld rollback', async (t) =>
          t.kind === 'daemon'
            ? { ...(await t.client.call<ReleaseResult>('POST', '/v1/rollback', { namespace, name, release: true }, 60_000)), daemon: true }
            : { ...releaseHold(t.deps, namespace, name), daemon: false },
        );
        if (isData(format)) return printData(format, r);
        process.stdout.write(`${r.model}: hold at version ${r.releasedVersion} released; serving the target${r.targetVersion ? ` (${r.targetVersion})` : ''} again\n`);
        if (!r.daemon) note('daemon not running: takes effect when `modeld run` starts');
        return;
      }
      const result = await withWriteTarget(config, 'modeld rollback', async (t) =>
        t.kind === 'daemon'
          ? { ...(await t.client.call<RollbackResult>('POST', '/v1/rollback', { namespace, name, to: opts.to }, 60_000)), daemon: true }
          : { ...rollback(t.deps, namespace, name, opts.to), daemon: false },
      );
      if (isData(format)) return printData(format, result);
      process.stdout.write(`${result.model}: serving ${result.heldVersion} instead of the target (was ${result.from ?? 'nothing'}) until the spec changes\n`);
      note(`\`modeld rollback --release ${result.model}\` ends the hold`);
      if (!result.daemon) note('daemon not running: takes effect when `modeld run` starts');
    });
}
