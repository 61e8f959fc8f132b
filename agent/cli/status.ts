import type { Command } from 'commander';
import { sleep } from '../../shared/sleep.js';
import { buildStatus, parseModelRef, type ModelStatusView, type StatusReport } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import { openReadOnly } from './direct.js';
import { exitCodesHelp } from './exit-codes.js';
import { table } from './output.js';
import { addOutputOptions, isData, outputFormat, printData } from './output-format.js';
import { daemonClient } from './target.js';

/** From the daemon when it answers; else read-only from the store (serving facts unknown). */
export async function readStatus(config: Config, model?: { namespace: string; name: string }): Promise<StatusReport> {
  const client = await daemonClient(config).catch((err: unknown) => {
    // A daemon that holds the directory but does not answer: the store can still be read.
    if (err instanceof ModeldError && err.code === 'DaemonNotRunning') return undefined;
    throw err;
  });
  if (client) {
    const q = model ? `?model=${encodeURIComponent(`${model.namespace}/${model.name}`)}` : '';
    return client.call<StatusReport>('GET', `/v1/status${q}`, undefined, 30_000);
  }
  const base = { node: config.node.name, stateDir: config.stateDir, daemon: false };
  const ro = openReadOnly(config);
  if (!ro) {
    if (model) throw new ModeldError('NotFound', `no model ${model.namespace}/${model.name} on this node (no state in ${config.stateDir})`);
    return { ...base, models: [] };
  }
  try {
    return buildStatus({ ...ro.source, ...base }, model);
  } finally {
    ro.close();
  }
}

const dash = (s: string | undefined) => (s === undefined || s === '' ? '-' : s);

/** A hold in force and how to end it; undefined when there is none. */
export function holdLine(m: ModelStatusView): string | undefined {
  if (!m.heldVersion) return undefined;
  return `held at version ${m.heldVersion} by \`modeld rollback\` (target ${m.targetVersion ?? 'none'}): \`modeld rollback --release ${m.namespace}/${m.name}\` ends the hold`;
}

/** A local hold on the switch in force (`modeld defer`) and how to end it; undefined when there is none. */
export function deferLine(m: ModelStatusView): string | undefined {
  if (!m.deferredUntil) return undefined;
  const waiting = m.phase === 'Deferred' ? `the switch to ${m.targetVersion ?? 'the target'} waits` : 'a new version will wait';
  return `deferred until ${m.deferredUntil} by \`modeld defer\` (${waiting}): \`modeld defer --release ${m.namespace}/${m.name}\` ends the hold`;
}

function reasonCell(m: ModelStatusView, wide = false): string {
  const parts: string[] = [];
  if (m.reason) parts.push(m.message ? `${m.reason}: ${m.message}` : m.reason);
  if (m.lastError?.reason && m.lastError.reason !== m.reason) parts.push(`last error ${m.lastError.reason}: ${m.lastError.message ?? ''}`.trim());
  if (m.note) parts.push(m.note);
  const text = parts.join('; ');
  return text.length > 100 && !wide ? `${text.slice(0, 97)}...` : text || '-';
}

export function renderStatus(r: StatusReport, wide = false): string {
  const header = ['MODEL', 'SOURCE', 'PHASE', 'SERVING', 'TARGET', 'READY', 'BACKEND', 'URL', 'REASON'];
  const rows = r.models.map((m) => [
    `${m.namespace}/${m.name}`,
    dash(m.source),
    m.phase,
    m.heldVersion && m.heldVersion === m.servingVersion ? `${m.servingVersion} (held)` : dash(m.servingVersion),
    dash(m.targetVersion),
    r.daemon ? `${m.readyReplicas}/${m.replicas}` : `?/${m.replicas}`,
    dash(m.backend), // native or wasm: a built-in model in the runtime host
    dash(m.url),
    reasonCell(m, wide),
  ]);
  let out = r.models.length ? table(header, rows) : 'no models on this node\n';
  for (const m of r.models) {
    const hold = holdLine(m);
    if (hold) out += `${m.namespace}/${m.name} ${hold}\n`;
    const deferral = deferLine(m);
    if (deferral) out += `${m.namespace}/${m.name} ${deferral}\n`;
  }
  if (r.models.length === 1 && r.models[0].events) {
    const m = r.models[0];
    const state = (v: ModelStatusView['versions'][number]) => (v.version === m.heldVersion ? `${v.state}, held` : v.state);
    out += `\nversions: ${m.versions.map((v) => `${v.version} (${state(v)})`).join(', ') || 'none'}\n`;
    out += `generation ${m.generation}, observed ${m.observedGeneration}\nrecent events:\n`;
    for (const e of m.events ?? []) out += `  ${new Date(e.time).toISOString()}  ${e.kind}  ${e.message}\n`;
  }
  if (!r.daemon) out += `(daemon not running: last recorded state in ${r.stateDir})\n`;
  return out;
}

export function registerStatus(program: Command): void {
  const cmd = program
    .command('status')
    .description('show the models on this node: phase, serving and target version, url, replicas, last error, a rollback hold, a deferral')
    .argument('[model]', 'one model: name or namespace/name (with its recent events)')
    .option('-n, --namespace <ns>', 'namespace of [model] when it has none', 'default')
    .option('-w, --watch', 'keep showing the status as it changes (Ctrl-C to stop)')
    .option('--interval <ms>', 'refresh interval for --watch', '1000');
  addOutputOptions(cmd)
    .addHelpText('after', exitCodesHelp('status'))
    .action(async (ref: string | undefined, opts: { namespace: string; watch?: boolean; interval: string; output?: string; json?: boolean }) => {
      const format = outputFormat(opts);
      const config = loadConfig({ path: program.opts().config });
      const model = ref ? parseModelRef(ref, opts.namespace) : undefined;
      if (!opts.watch) {
        const r = await readStatus(config, model);
        if (isData(format)) printData(format, r);
        else process.stdout.write(renderStatus(r, format === 'wide'));
        return;
      }
      const interval = Number(opts.interval);
      if (!Number.isInteger(interval) || interval < 100) throw new ModeldError('BadRequest', '--interval must be an integer of at least 100 (ms)');
      const stop = new AbortController();
      const quit = () => stop.abort();
      process.once('SIGINT', quit);
      process.once('SIGTERM', quit);
      let previous = '';
      while (!stop.signal.aborted) {
        const r = await readStatus(config, model);
        // Compare without times that change on every read.
        const key = JSON.stringify(r.models.map(({ updatedAt: _u, time: _t, events: _e, ...m }) => m)) + r.daemon;
        if (key !== previous) {
          previous = key;
          if (format === 'json') process.stdout.write(JSON.stringify(r) + '\n');
          else if (format === 'yaml') {
            process.stdout.write('---\n'); // one YAML document per change
            printData('yaml', r);
          }
          else if (process.stdout.isTTY) process.stdout.write(`\x1b[H\x1b[2J${new Date().toISOString()}\n${renderStatus(r, format === 'wide')}`);
          else process.stdout.write(`${new Date().toISOString()}\n${renderStatus(r, format === 'wide')}\n`);
        }
        await sleep(interval, stop.signal);
      }
    });
}
