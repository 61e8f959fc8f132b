import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';
import { isData, outputFormat, printData } from './output-format.js';
import type { VerifyReport } from '../admin/verify.js';
import { verifyStore } from '../admin/verify.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { withWriteTarget } from './target.js';

export function registerVerify(program: Command): void {
  program
    .command('verify')
    .description('re-hash every stored archive and installed version; quarantine what is corrupt (exit 1 if anything is)')
    .option('--no-repair', 'only report; move and remove nothing')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('verify'))
    .action(async (opts: { repair: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const r = await withWriteTarget(config, 'modeld verify', async (t) =>
        t.kind === 'daemon' ? t.client.call<VerifyReport>('POST', '/v1/verify', { repair: opts.repair }) : verifyStore(t.deps, { repair: opts.repair }),
      );
      if (isData(format)) printData(format, r);
      else {
        for (const c of r.corrupt) {
          const what = c.kind === 'blob' ? `archive sha256:${c.sha256}` : `version ${c.namespace}/${c.name} ${c.version}`;
          process.stdout.write(`CORRUPT ${what}: ${c.problem} (${c.action})\n`);
        }
        for (const u of r.unverifiable) process.stdout.write(`unverifiable version ${u.namespace}/${u.name} ${u.version}: no recorded digest and no archive\n`);
        const count = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
        process.stdout.write(`checked ${count(r.blobsChecked, 'archive')} and ${count(r.versionsChecked, 'version')}: ${r.ok ? 'all intact' : `${r.corrupt.length} corrupt`}\n`);
      }
      if (!r.ok) throw new ModeldError('Corrupt', `${r.corrupt.length} corrupt item(s) found`);
    });
}
