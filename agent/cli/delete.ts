import type { Command } from 'commander';
import { deleteLocal } from '../admin/apply.js';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { exitCodesHelp } from './exit-codes.js';
import { note } from './output.js';
import { isData, outputFormat, printData } from './output-format.js';
import { collect, readResources } from './resource-files.js';
import { withWriteTarget } from './target.js';

export function registerDelete(program: Command): void {
  program
    .command('delete')
    .description('remove locally applied models (their runtimes stop, their files go); cloud-managed models are deleted in the cloud')
    .argument('[model]', 'name or namespace/name')
    .option('-f, --filename <path>', 'the models named in these files, directories or "-" (repeatable), as `apply -f` reads them', collect)
    .option('-R, --recursive', 'with a directory: its subdirectories too')
    .option('-n, --namespace <ns>', 'namespace when <model> (or a resource) has none', 'default')
    .option('--ignore-not-found', 'a model that is not there is not an error')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('delete'))
    .action(async (ref: string | undefined, opts: { filename?: string[]; recursive?: boolean; namespace: string; ignoreNotFound?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      if (!ref === !opts.filename) throw new ModeldError('BadRequest', 'name a model or give -f, not both');
      const config = loadConfig({ path: program.opts().config });
      const models = ref
        ? [parseModelRef(ref, opts.namespace)]
        : readResources(opts.filename!, { namespace: opts.namespace, recursive: opts.recursive }).map((c) => c.metadata);
      const results: Array<{ model: string; deleted: boolean }> = [];
      const daemon = await withWriteTarget(config, 'modeld delete', async (t) => {
        for (const { namespace, name } of models) {
          try {
            results.push(
              t.kind === 'daemon'
                ? await t.client.call<{ model: string; deleted: true }>('DELETE', `/v1/models/${namespace}/${name}`, undefined, 60_000)
                : deleteLocal(t.deps, namespace, name),
            );
          } catch (err) {
            if (!(opts.ignoreNotFound && err instanceof ModeldError && err.code === 'NotFound')) throw err;
            results.push({ model: `${namespace}/${name}`, deleted: false });
          }
        }
        return t.kind === 'daemon';
      });
      if (isData(format)) return printData(format, ref ? { ...results[0], daemon } : { daemon, results });
      for (const r of results) process.stdout.write(`${r.model} ${r.deleted ? 'deleted' : 'not found'}\n`);
      if (!daemon) note('daemon not running: its files are removed when `modeld run` starts');
    });
}
