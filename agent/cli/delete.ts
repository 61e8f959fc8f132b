import type { Command } from 'commander';
import { deleteLocal } from '../admin/apply.js';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { note, printJson } from './output.js';
import { withWriteTarget } from './target.js';

export function registerDelete(program: Command): void {
  program
    .command('delete')
    .description('remove a locally applied model (its runtimes stop, its files go); cloud-managed models are deleted in the cloud')
    .argument('<model>', 'name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace when <model> has none', 'default')
    .option('--json', 'machine-readable output')
    .action(async (ref: string, opts: { namespace: string; json?: boolean }) => {
      const config = loadConfig({ path: program.opts().config });
      const { namespace, name } = parseModelRef(ref, opts.namespace);
      const result = await withWriteTarget(config, 'modeld delete', async (t) =>
        t.kind === 'daemon'
          ? { ...(await t.client.call<{ model: string; deleted: true }>('DELETE', `/v1/models/${namespace}/${name}`, undefined, 60_000)), daemon: true }
          : { ...deleteLocal(t.deps, namespace, name), daemon: false },
      );
      if (opts.json) return printJson(result);
      process.stdout.write(`${result.model} deleted\n`);
      if (!result.daemon) note('daemon not running: its files are removed when `modeld run` starts');
    });
}
