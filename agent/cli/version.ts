import type { Command } from 'commander';
import { AGENT_VERSION } from '../version.js';
import { printJson } from './output.js';

export function registerVersion(program: Command): void {
  program
    .command('version')
    .description('print the version of modeld (also: modeld -V)')
    .option('--json', 'machine-readable output')
    .action((opts: { json?: boolean }) => {
      const info = { version: AGENT_VERSION, node: process.version, platform: process.platform, arch: process.arch };
      if (opts.json) printJson(info);
      else process.stdout.write(`modeld ${info.version} (node ${info.node}, ${info.platform}/${info.arch})\n`);
    });
}
