import { Option, type Command } from 'commander';
import { stringify } from 'yaml';
import { ModeldError } from '../errors.js';

// `-o json|yaml|wide` (and `name` where it makes sense) on the read commands, as kubectl has it.
// `--json` stays, the same as `-o json`.

export type Format = 'text' | 'wide' | 'json' | 'yaml' | 'name';

export function addOutputOptions(cmd: Command, formats: Format[] = ['json', 'yaml', 'wide']): Command {
  return cmd
    .addOption(new Option('-o, --output <format>', `output format: ${formats.join(', ')}`))
    .option('--json', 'machine-readable output (the same as -o json)');
}

export function outputFormat(opts: { output?: string; json?: boolean }, formats: Format[] = ['json', 'yaml', 'wide']): Format {
  if (opts.json) return 'json';
  if (opts.output === undefined) return 'text';
  if (!(formats as string[]).includes(opts.output)) {
    throw new ModeldError('BadRequest', `-o ${JSON.stringify(opts.output.slice(0, 40))}: the formats are ${formats.join(', ')}`);
  }
  return opts.output as Format;
}

/** JSON or YAML of `value` on stdout. */
export function printData(format: 'json' | 'yaml', value: unknown): void {
  process.stdout.write(format === 'json' ? JSON.stringify(value, null, 2) + '\n' : stringify(value));
}

export const isData = (f: Format): f is 'json' | 'yaml' => f === 'json' || f === 'yaml';
