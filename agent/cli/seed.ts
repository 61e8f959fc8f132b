import type { Command } from 'commander';
import { exitCodesHelp } from './exit-codes.js';
import { isData, outputFormat, printData } from './output-format.js';
import { resolve } from 'node:path';
import { SHA256_PATTERN, VERSION_PATTERN } from '../../shared/index.js';
import { seedArchive, type SeedResult } from '../admin/seed.js';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { formatBytes, note, progressBar } from './output.js';
import { withWriteTarget } from './target.js';

export function registerSeed(program: Command): void {
  program
    .command('seed')
    .description('copy a model archive into the store (offline pre-seeding): a spec naming its digest needs no download')
    .argument('<archive>', 'the .tar or .tar.gz archive')
    .requiredOption('--name <model>', 'the model it is for (name or namespace/name)')
    .requiredOption('--version <v>', 'the version it is')
    .option('-n, --namespace <ns>', 'namespace when --name has none', 'default')
    .option('--sha256 <hex>', 'expected digest: refused unless the archive matches')
    .option('--replace', 'other bytes than the ones seeded before under this name and version (a republished version)')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText('after', exitCodesHelp('seed'))
    .action(async (archive: string, opts: { name: string; version: string; namespace: string; sha256?: string; replace?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const { namespace, name } = parseModelRef(opts.name, opts.namespace);
      if (!VERSION_PATTERN.test(opts.version)) throw new ModeldError('BadRequest', `--version "${opts.version.slice(0, 80)}" is not a version`);
      if (opts.sha256 !== undefined && !SHA256_PATTERN.test(opts.sha256.trim())) {
        throw new ModeldError('BadRequest', `--sha256 "${opts.sha256.slice(0, 80)}" is not a sha256 digest (64 hex characters)`);
      }
      // Resolved here: the daemon imports the file itself, from its own working directory.
      const request = { path: resolve(archive), sha256: opts.sha256?.trim(), namespace, name, version: opts.version, replace: opts.replace ?? false };
      const bar = progressBar(`seeding ${archive}`);
      const out = await withWriteTarget(config, 'modeld seed', async (t, signal) => {
        try {
          if (t.kind === 'daemon') {
            const r = await t.client.stream<SeedResult>(
              'POST',
              '/v1/seed',
              request,
              (line) => {
                const p = line.progress as { bytes: number; total: number } | undefined;
                if (p) bar.update(p.bytes, p.total);
              },
              signal,
            );
            return { ...r, daemon: true };
          }
          return { ...(await seedArchive(t.deps, request, { onProgress: (b, total) => bar.update(b, total), signal })), daemon: false };
        } finally {
          bar.done();
        }
      });
      if (isData(format)) return printData(format, out);
      // sha256sum's format, so scripts can read the digest.
      process.stdout.write(`${out.sha256}  ${archive}\n`);
      const checked = out.verifiedAgainst === 'argument' ? 'matches --sha256' : out.verifiedAgainst === 'spec' ? `matches the spec of ${namespace}/${name}` : out.verifiedAgainst === 'seed' ? 'matches the earlier seed' : 'computed';
      note(`${out.alreadyPresent ? 'already in the store' : 'stored'} (${formatBytes(out.size)}, digest ${checked}) for ${namespace}/${name} version ${opts.version}`);
    });
}
