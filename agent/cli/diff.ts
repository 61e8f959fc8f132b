import type { Command } from 'commander';
import { stringify } from 'yaml';
import type { ApplyPlan } from '../admin/apply.js';
import { loadConfig } from '../config/load.js';
import { planAll } from './apply.js';
import { exitCodesHelp } from './exit-codes.js';
import { lineDiff } from './line-diff.js';
import { isData, outputFormat, printData } from './output-format.js';
import { collect, readResources } from './resource-files.js';

// `modeld diff -f`: what `modeld apply -f` would change, as `kubectl diff` shows it — the spec on
// this node against the file's, line by line — and which version would then serve. Writes
// nothing. Exit 0: no differences; 1: differences (kubectl diff's codes); 2 and up: errors.

const specLines = (spec: unknown) => (spec === undefined ? [] : stringify(spec).trimEnd().split('\n'));

export function renderPlan(p: ApplyPlan, where: string): string {
  let out = `diff ${p.model}: ${p.action === 'created' ? 'would be created' : p.changed ? `generation ${p.generation - 1} -> ${p.generation}` : 'no changes'}\n`;
  if (p.changed) {
    out += `--- ${p.model} (on this node)\n+++ ${p.model} (${where})\n`;
    for (const d of lineDiff(specLines(p.before), specLines(p.after))) out += `${d.op}${d.line}\n`;
  }
  const now = p.servingNow ?? 'nothing';
  const next = p.wouldServe ?? (p.after.image ? 'nothing here (image-based: the controller deploys it)' : 'nothing');
  out += now === next ? `serving: ${now} (stays)\n` : `serving: ${now} -> ${next}\n`;
  if (p.heldVersion) out += `held at ${p.heldVersion} by a rollback (the spec does not change, so the hold stays)\n`;
  return out;
}

export function registerDiff(program: Command): void {
  program
    .command('diff')
    .description('show what `modeld apply -f` would change on this node, and which version would serve; changes nothing')
    .requiredOption('-f, --filename <path>', 'a YAML or JSON file, a directory of them, or "-" for stdin (repeatable)', collect)
    .option('-R, --recursive', 'with a directory: its subdirectories too')
    .option('-n, --namespace <ns>', 'namespace for resources that name none', 'default')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('diff'))
    .action(async (opts: { filename: string[]; recursive?: boolean; namespace: string; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const contents = readResources(opts.filename, { namespace: opts.namespace, recursive: opts.recursive });
      const { daemon, plans } = await planAll(config, contents);
      if (isData(format)) printData(format, { daemon, plans });
      else process.stdout.write(plans.map((p) => renderPlan(p, opts.filename.length === 1 ? opts.filename[0] : 'input')).join('\n'));
      process.exitCode = plans.some((p) => p.changed) ? 1 : 0;
    });
}
