import type { Command } from 'commander';
import { parseModelRef, type ModelStatusView, type StatusReport } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { exitCodesHelp } from './exit-codes.js';
import { toResource } from './get.js';
import { deferLine, holdLine } from './status.js';
import { table } from './output.js';
import { addOutputOptions, isData, outputFormat, printData } from './output-format.js';
import { readStatus } from './status.js';

// `modeld describe <model>`: one model's whole story, as `kubectl describe` tells it — the spec,
// every version with its digest and state, what serves it, a hold and how to end it, the recent
// events (oldest first, as kubectl lists them).

const none = (s: string | number | undefined) => (s === undefined || s === '' ? '<none>' : String(s));
const indent = (text: string, by = '  ') => text.trimEnd().split('\n').map((l) => by + l).join('\n') + '\n';

export function renderDescribe(m: ModelStatusView, r: Pick<StatusReport, 'daemon' | 'stateDir'>): string {
  const spec = m.spec;
  const field = (k: string, v: string | number | undefined) => `${`${k}:`.padEnd(16)}${none(v)}\n`;
  let out = field('Name', m.name) + field('Namespace', m.namespace) + field('Source', m.source) + field('Generation', `${m.generation} (observed ${m.observedGeneration})`);
  out += 'Spec:\n';
  if (spec) {
    const sel = spec.nodeSelector && Object.keys(spec.nodeSelector).length ? Object.entries(spec.nodeSelector).map(([k, v]) => `${k}=${v}`).join(',') : undefined;
    out += indent(
      field('Model Name', spec.modelName) +
        field('Layer', spec.deployToLayer) +
        field('Framework', spec.frameworkType) +
        field('Target', spec.targetVersion ? spec.targetVersion : `<highest: ${m.targetVersion ?? 'none'}>`) +
        field('Replicas', spec.replicas ?? 1) +
        field('Node Selector', sel) +
        (spec.image ? field('Image', spec.image) : ''),
    );
    if (spec.manifest?.length) {
      out += '  Manifest:\n' + indent(table(['VERSION', 'SHA256', 'DOWNLOAD URL'], spec.manifest.map((e) => [e.version, e.sha256sum ?? '<none>', e.downloadURL])), '    ');
    }
  } else out += '  <none: the spec was removed; what is left goes>\n';
  out += 'Status:\n';
  out += indent(
    field('Phase', m.phase) +
      field('Serving', m.servingVersion) +
      field('Target', m.targetVersion) +
      field('Ready', r.daemon ? `${m.readyReplicas}/${m.replicas}` : `unknown/${m.replicas} (daemon not running)`) +
      field('URL', m.url) +
      field('Reason', m.reason ? `${m.reason}${m.message ? `: ${m.message}` : ''}` : undefined) +
      (m.lastError ? field('Last Error', `version ${m.lastError.version}: ${m.lastError.reason ?? ''} ${m.lastError.message ?? ''}`.trim()) : '') +
      (m.note ? field('Note', m.note) : ''),
  );
  const hold = holdLine(m);
  if (hold) out += `  Hold:         ${hold}\n`;
  const deferral = deferLine(m);
  if (deferral) out += `  Deferral:     ${deferral}\n`;
  out += 'Versions:\n';
  out += m.versions.length ? indent(table(['VERSION', 'STATE', 'SHA256'], m.versions.map((v) => [v.version, v.version === m.heldVersion ? `${v.state}, held` : v.state, v.sha256sum ?? '<none>']))) : '  <none installed>\n';
  out += 'Instances:\n';
  out += r.daemon
    ? `  ${m.readyReplicas} of ${m.replicas} ready${m.servingVersion ? `, version ${m.servingVersion}` : ''}${m.url ? `, behind ${m.url}` : ''}\n`
    : `  unknown: the daemon is not running (state read from ${r.stateDir})\n`;
  out += 'Events:\n';
  const events = [...(m.events ?? [])].reverse();
  out += events.length ? indent(table(['TIME', 'KIND', 'MESSAGE'], events.map((e) => [new Date(e.time).toISOString(), e.kind, e.message]))) : '  <none>\n';
  return out;
}

export function registerDescribe(program: Command): void {
  const cmd = program
    .command('describe')
    .description("one model's whole story: spec, versions with digests and states, instances, hold, recent events")
    .argument('<model>', 'name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace of <model> when it has none', 'default');
  addOutputOptions(cmd, ['json', 'yaml'])
    .addHelpText('after', exitCodesHelp('describe'))
    .action(async (ref: string, opts: { namespace: string; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const r = await readStatus(config, parseModelRef(ref, opts.namespace));
      const m = r.models[0];
      if (isData(format)) return printData(format, { ...toResource(m), events: m.events ?? [] });
      process.stdout.write(renderDescribe(m, r));
    });
}
