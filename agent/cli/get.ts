import type { Command } from 'commander';
import { RESOURCE_API_VERSION } from '../admin/resource.js';
import { parseModelRef, type ModelStatusView, type StatusReport } from '../admin/status-view.js';
import { KIND } from '../../shared/index.js';
import { loadConfig } from '../config/load.js';
import { exitCodesHelp } from './exit-codes.js';
import { table } from './output.js';
import { addOutputOptions, isData, outputFormat, printData, type Format } from './output-format.js';
import { readStatus } from './status.js';

// `modeld get`: the models as `kubectl get im` lists them; `-o yaml` is the resource with its
// status, which `modeld apply -f` takes back (status is ignored there); `-o name` is one
// `namespace/name` per line for scripts (and shell completion).

const FORMATS: Format[] = ['json', 'yaml', 'wide', 'name'];
const dash = (s: string | undefined) => (s === undefined || s === '' ? '-' : s);

/** One model as an InferenceModel resource: metadata, the node's spec, the node's status. */
export function toResource(m: ModelStatusView) {
  const { spec, events: _events, namespace, name, generation, uid, ...status } = m;
  return {
    apiVersion: RESOURCE_API_VERSION,
    kind: KIND,
    metadata: { name, namespace, generation, ...(uid ? { uid } : {}) },
    ...(spec ? { spec } : {}),
    status,
  };
}

export const servingCell = (m: ModelStatusView) => (m.heldVersion && m.heldVersion === m.servingVersion ? `${m.servingVersion} (held)` : dash(m.servingVersion));

export function renderGet(r: StatusReport, wide: boolean): string {
  if (!r.models.length) return 'No models on this node.\n';
  const header = ['NAMESPACE', 'NAME', 'PHASE', 'SERVING', 'TARGET', 'READY', ...(wide ? ['SOURCE', 'MODEL', 'URL', 'REASON'] : [])];
  const rows = r.models.map((m) => [
    m.namespace,
    m.name,
    m.phase,
    servingCell(m),
    dash(m.targetVersion),
    r.daemon ? `${m.readyReplicas}/${m.replicas}` : `?/${m.replicas}`,
    ...(wide ? [dash(m.source), dash(m.spec?.modelName), dash(m.url), dash(m.reason)] : []),
  ]);
  return table(header, rows);
}

export function registerGet(program: Command): void {
  const cmd = program
    .command('get')
    .description('list the models on this node (kubectl get im): phase, serving and target version, ready replicas')
    .argument('[model]', 'one model: name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace of [model] when it has none', 'default');
  addOutputOptions(cmd, FORMATS)
    .addHelpText('after', exitCodesHelp('get'))
    .action(async (ref: string | undefined, opts: { namespace: string; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, FORMATS);
      const config = loadConfig({ path: program.opts().config });
      const r = await readStatus(config, ref ? parseModelRef(ref, opts.namespace) : undefined);
      if (isData(format)) {
        const items = r.models.map(toResource);
        return printData(format, ref ? items[0] : { apiVersion: 'v1', kind: 'List', items });
      }
      if (format === 'name') return void process.stdout.write(r.models.map((m) => `${m.namespace}/${m.name}\n`).join(''));
      process.stdout.write(renderGet(r, format === 'wide'));
      if (!r.daemon) process.stderr.write(`(daemon not running: last recorded state in ${r.stateDir})\n`);
    });
}
