import type { Command } from 'commander';
import { EMPTY_STORE, applyLocal, planApply, type ApplyPlan, type ApplyResult } from '../admin/apply.js';
import { RESOURCE_API_VERSION } from '../admin/resource.js';
import { KIND, type ModelContent } from '../../shared/index.js';
import type { Config } from '../config/schema.js';
import { loadConfig } from '../config/load.js';
import { exitCodesHelp } from './exit-codes.js';
import { note } from './output.js';
import { isData, outputFormat, printData } from './output-format.js';
import { collect, readResources } from './resource-files.js';
import { withReadTarget, withWriteTarget } from './target.js';

export const toResource = (c: ModelContent) => ({ apiVersion: RESOURCE_API_VERSION, kind: KIND, metadata: c.metadata, spec: c.spec });

/** What applying each resource would do, from the daemon or the store read-only: writes nothing. */
export async function planAll(config: Config, contents: ModelContent[]): Promise<{ daemon: boolean; plans: ApplyPlan[] }> {
  return withReadTarget(config, async (t) => {
    const plans: ApplyPlan[] = [];
    for (const c of contents) {
      plans.push(t.kind === 'daemon' ? await t.client.call<ApplyPlan>('POST', '/v1/apply?dryRun=true', toResource(c), 60_000) : planApply({ config, store: t.store ?? EMPTY_STORE }, c));
    }
    return { daemon: t.kind === 'daemon', plans };
  });
}

const holdNote = (r: ApplyResult) =>
  r.heldVersion && !r.changed ? note(`${r.model}: held at version ${r.heldVersion} by a rollback; \`modeld rollback --release ${r.model}\` serves the target again`) : undefined;

export function registerApply(program: Command): void {
  program
    .command('apply')
    .description("deploy InferenceModels from local files (no cloud needed); the cloud's spec for the same model wins")
    .requiredOption('-f, --filename <path>', 'a YAML or JSON file, a directory of them, or "-" for stdin (repeatable)', collect)
    .option('-R, --recursive', 'with a directory: its subdirectories too')
    .option('-n, --namespace <ns>', 'namespace for resources that name none', 'default')
    .option('--dry-run', 'check everything and say what would change; change nothing')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('apply'))
    .action(async (opts: { filename: string[]; recursive?: boolean; namespace: string; dryRun?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      // Every resource is read and validated before the first is applied.
      const contents = readResources(opts.filename, { namespace: opts.namespace, recursive: opts.recursive });
      let daemon: boolean;
      let results: ApplyResult[];
      if (opts.dryRun) {
        const planned = await planAll(config, contents);
        daemon = planned.daemon;
        results = planned.plans.map(({ model, action, changed, generation, heldVersion }) => ({ model, action, changed, generation, heldVersion, dryRun: true }));
      } else {
        results = [];
        daemon = await withWriteTarget(config, 'modeld apply', async (t) => {
          for (const c of contents) {
            results.push(t.kind === 'daemon' ? await t.client.call<ApplyResult>('POST', '/v1/apply', toResource(c), 60_000) : applyLocal(t.deps, c));
          }
          return t.kind === 'daemon';
        });
      }
      if (isData(format)) return printData(format, { daemon, results });
      for (const r of results) {
        process.stdout.write(`${r.model} ${r.action} (generation ${r.generation}${opts.dryRun ? ', dry run' : ''})\n`);
        holdNote(r);
      }
      if (!daemon && !opts.dryRun) note('daemon not running: the spec is stored and takes effect when `modeld run` starts');
    });
}
