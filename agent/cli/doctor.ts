import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';
import { isData, outputFormat, printData } from './output-format.js';
import { detectEdgecore } from '../config/edgecore.js';
import { DEFAULT_CONFIG_PATH, loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import { checkBroker, checkDiskSpace, checkEdgecore, checkHost, checkPort, checkRuntimes, checkStateDir, checkUser, type CheckResult } from './doctor-checks.js';
import { switchedTo } from './service-user.js';
import { checkSigning } from './doctor-signing.js';

// `modeld doctor`: one line per check (ok / warn / fail), exit 1 when any check fails. Works with
// or without a running daemon; what the daemon holds (its ports) counts as fine. Run as root, it
// checks as the state directory's owner (index.ts switched to it): what the daemon can read and write.

export async function runDoctor(opts: { configPath?: string; timeoutMs: number; edgecorePath?: string }): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const edgecore = detectEdgecore(opts.edgecorePath);
  let config: Config | undefined;
  try {
    config = loadConfig({ path: opts.configPath, defaults: edgecore.defaults });
    const file = opts.configPath || process.env.MODELD_CONFIG || DEFAULT_CONFIG_PATH;
    const message = existsSync(file) ? `${file} is valid (node ${config.node.name})` : `no ${file}: defaults and environment are valid (node ${config.node.name})`;
    results.push({ name: 'config', status: 'ok', message });
  } catch (err) {
    const message = err instanceof ModeldError ? err.message : (err as Error).message;
    results.push({ name: 'config', status: 'fail', message });
  }
  results.push(checkEdgecore(edgecore));
  if (config) results.unshift(checkUser(config, switchedTo()));
  if (!config) {
    results.push({ name: 'others', status: 'warn', message: 'skipped: they need a valid configuration' });
    return results;
  }
  results.push(checkStateDir(config), checkDiskSpace(config), checkSigning(config));
  results.push(await checkBroker(config, opts.timeoutMs));
  results.push(...(await checkRuntimes(config)));
  results.push(await checkHost(config, opts.timeoutMs));
  results.push(await checkPort('gateway', config.gateway.bind, config.gateway.port, opts.timeoutMs, { tls: !!config.gateway.tls.cert }));
  results.push(await checkPort('metrics', config.admin.metricsBind, config.admin.metricsPort, opts.timeoutMs));
  return results;
}

export function formatChecks(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  return results.map((r) => `${r.status.padEnd(4)} ${r.name.padEnd(width)}  ${r.message}`).join('\n') + '\n';
}

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check this node: config, broker, disk, state directory, runtimes, runtime host, edgecore, ports (exit 1 on any failure)')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .option('--timeout <ms>', 'how long to wait for the broker and for ports held by a daemon', '3000')
    .addHelpText('after', exitCodesHelp('doctor'))
    .action(async (opts: { output?: string; json?: boolean; timeout: string }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const timeoutMs = Number(opts.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > 600_000) {
        throw new ModeldError('BadRequest', `--timeout must be a number of milliseconds (1-600000), got ${JSON.stringify(opts.timeout)}`);
      }
      const results = await runDoctor({ configPath: program.opts().config, timeoutMs });
      const ok = !results.some((r) => r.status === 'fail');
      if (isData(format)) printData(format, { ok, checks: results });
      else process.stdout.write(formatChecks(results));
      process.exitCode = ok ? 0 : 1;
    });
}
