import type { Command } from 'commander';
import { readFileSync } from 'node:fs';
import { applyLocal, type ApplyResult } from '../admin/apply.js';
import { RESOURCE_API_VERSION, parseResources } from '../admin/resource.js';
import { KIND } from '../../shared/index.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { note, printJson } from './output.js';
import { withWriteTarget } from './target.js';

/** The file's text ('-' reads stdin); BadRequest when it cannot be read. */
export function readInputFile(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ModeldError('BadRequest', `cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : (e.code ?? e.message)}`);
  }
}

export function registerApply(program: Command): void {
  program
    .command('apply')
    .description('deploy an InferenceModel from a local file (no cloud needed); the cloud\'s spec for the same model wins')
    .requiredOption('-f, --filename <file>', 'YAML or JSON file with one or more InferenceModel resources ("-" for stdin)')
    .option('-n, --namespace <ns>', 'namespace for resources that name none', 'default')
    .option('--json', 'machine-readable output')
    .action(async (opts: { filename: string; namespace: string; json?: boolean }) => {
      const config = loadConfig({ path: program.opts().config });
      const contents = parseResources(readInputFile(opts.filename), opts.filename, opts.namespace);
      const results: ApplyResult[] = [];
      const daemon = await withWriteTarget(config, 'modeld apply', async (t) => {
        for (const c of contents) {
          if (t.kind === 'daemon') {
            const resource = { apiVersion: RESOURCE_API_VERSION, kind: KIND, metadata: c.metadata, spec: c.spec };
            results.push(await t.client.call<ApplyResult>('POST', '/v1/apply', resource, 60_000));
          } else {
            results.push(applyLocal(t.deps, c));
          }
        }
        return t.kind === 'daemon';
      });
      if (opts.json) return printJson({ daemon, results });
      for (const r of results) process.stdout.write(`${r.model} ${r.changed ? 'configured' : 'unchanged'} (generation ${r.generation})\n`);
      if (!daemon) note('daemon not running: the spec is stored and takes effect when `modeld run` starts');
    });
}
