import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';

// `modeld host`: the runtime host (agent/host/), what modeld-host.service starts. The release's
// launcher runs agent/host/main.js directly for it, so the host does not load the agent's modules.
export function registerHost(program: Command): void {
  program
    .command('host')
    .description('run the runtime host: the node inference endpoint and every built-in ONNX model (what modeld-host.service starts)')
    .addHelpText('after', exitCodesHelp('host'))
    .action(async () => {
      const { runHost } = await import('../host/main.js');
      await runHost({ configPath: program.opts().config });
    });
}
