import type { Command } from 'commander';
import { DEFAULT_EDGECORE_PATH, detectEdgecore } from '../config/edgecore.js';
import { explainConfig, type ConfigEntry, type ConfigView } from '../config/explain.js';
import { ModeldError } from '../errors.js';
import { exitCodesHelp } from './exit-codes.js';
import { note, table } from './output.js';
import { addOutputOptions, isData, outputFormat, printData } from './output-format.js';
import { daemonClient } from './target.js';

// `modeld config view`: the configuration the daemon runs with — asked of the running daemon
// (what it loaded at start, its own environment included), else loaded now as `modeld run`
// would — one key per line with its value and its source, like `systemctl show` with
// `systemd-analyze cat-config`'s sense of where each value came from.

const SOURCE_TEXT: Record<ConfigEntry['source'], string> = { default: 'default', file: 'file', edgecore: 'edgecore.yaml', env: 'environment' };
const valueText = (v: unknown) => (v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v));

export function renderConfigView(view: ConfigView): string {
  return table(
    ['KEY', 'VALUE', 'SOURCE'],
    view.entries.map((e) => [e.key, valueText(e.value), e.from ? `${SOURCE_TEXT[e.source]} ${e.from}` : SOURCE_TEXT[e.source]]),
  );
}

export function registerConfig(program: Command): void {
  const config = program.command('config').description('the configuration: `modeld config view`');
  const view = config
    .command('view')
    .description('the effective configuration, each value with its source (default, file, edgecore.yaml, environment)')
    .option('--edgecore <file>', "edgecore's config, as `modeld run` reads it", DEFAULT_EDGECORE_PATH)
    .option('--local', 'load it here as `modeld run` would now, even when a daemon runs');
  addOutputOptions(view, ['json', 'yaml'])
    .addHelpText('after', exitCodesHelp('config'))
    .action(async (opts: { edgecore: string; local?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const local = explainConfig({ path: program.opts().config, edgecore: detectEdgecore(opts.edgecore) });
      let shown: ConfigView & { pid?: number } = local.view;
      let from = 'loaded now, as `modeld run` would (no daemon answers)';
      if (!opts.local) {
        const client = await daemonClient(local.config).catch((err: unknown) => {
          if (err instanceof ModeldError && err.code === 'DaemonNotRunning') return undefined;
          throw err;
        });
        const daemon = await client?.call<ConfigView & { pid: number }>('GET', '/v1/config', undefined, 10_000);
        if (daemon) {
          shown = daemon;
          from = `of the running daemon (pid ${daemon.pid}), as loaded when it started`;
          const same = JSON.stringify(daemon.entries) === JSON.stringify(local.view.entries);
          if (!same) from += '; the file or environment here gives another configuration now: restart the daemon to apply it (--local shows it)';
        }
      }
      if (isData(format)) return printData(format, shown);
      process.stdout.write(renderConfigView(shown));
      note(`configuration ${from}; file ${shown.file.path}${shown.file.read ? '' : ' (not there)'}, edgecore.yaml ${shown.edgecore.path}${shown.edgecore.found ? '' : ' (not there)'}`);
    });
}
