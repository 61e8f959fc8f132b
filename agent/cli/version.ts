import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';
import { isData, outputFormat, printData } from './output-format.js';
import { AGENT_VERSION } from '../version.js';

export function registerVersion(program: Command): void {
  program
    .command('version')
    .description('print the version of modeld (also: modeld -V)')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('version'))
    .action((opts: { output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const info = { version: AGENT_VERSION, node: process.version, platform: process.platform, arch: process.arch };
      if (isData(format)) printData(format, info);
      else process.stdout.write(`modeld ${info.version} (node ${info.node}, ${info.platform}/${info.arch})\n`);
    });
}
