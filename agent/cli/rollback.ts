import type { Command } from 'commander';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { parseRollbackTarget, rollback, type RollbackResult } from '../reconcile/rollback.js';
import { note, printJson } from './output.js';
import { withWriteTarget } from './target.js';

export function registerRollback(program: Command): void {
  program
    .command('rollback')
    .description('serve the previous (or a named) installed version instead of the target, until the spec changes')
    .argument('<model>', 'name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace when <model> has none', 'default')
    .option('--to <version>', 'an installed version to serve (default: the previous one); <version>@<digest prefix> picks one build of a republished version')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, opts: { namespace: string; to?: string; json?: boolean }) => {
      const config = loadConfig({ path: program.opts().config });
      const { namespace, name } = parseModelRef(ref, opts.namespace);
      if (opts.to !== undefined && !parseRollbackTarget(opts.to)) throw new ModeldError('BadRequest', `--to "${opts.to.slice(0, 80)}" is not a version (or version@digest)`);
      const result = await withWriteTarget(config, 'modeld rollback', async (t) =>
        t.kind === 'daemon'
          ? { ...(await t.client.call<RollbackResult>('POST', '/v1/rollback', { namespace, name, to: opts.to }, 60_000)), daemon: true }
          : { ...rollback(t.deps, namespace, name, opts.to), daemon: false },
      );
      if (opts.json) return printJson(result);
      process.stdout.write(`${result.model}: serving ${result.heldVersion} instead of the target (was ${result.from ?? 'nothing'}) until the spec changes\n`);
      if (!result.daemon) note('daemon not running: takes effect when `modeld run` starts');
    });
}
