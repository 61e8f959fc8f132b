#!/usr/bin/env node
import { Command } from 'commander';
import { ModeldError } from '../errors.js';
import { AGENT_VERSION } from '../version.js';
import { registerRun } from './run.js';
import { registerDoctor } from './doctor.js';

// The one program: daemon (`modeld run`) and the node's admin CLI. One file per subcommand.

const program = new Command()
  .name('modeld')
  .description('deliver and serve machine-learning models on this edge node')
  .version(AGENT_VERSION, '-V, --version')
  .option('-c, --config <file>', 'configuration file (default /etc/modeld/config.yaml, or $MODELD_CONFIG)')
  .showHelpAfterError();

registerRun(program);
registerDoctor(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  const message = err instanceof ModeldError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err);
  process.stderr.write(`modeld: ${message}\n`);
  process.exit(err instanceof ModeldError && err.code === 'ConfigInvalid' ? 78 : 1);
});
