import type { Command } from 'commander';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import { defer, releaseDeferral, type DeferReleaseResult, type DeferResult } from '../reconcile/defer.js';
import { parseDuration, parseRfc3339 } from '../reconcile/deferral-time.js';
import { exitCodesHelp } from './exit-codes.js';
import { note } from './output.js';
import { isData, outputFormat, printData } from './output-format.js';
import { withWriteTarget } from './target.js';

// `modeld defer`: a local application (or a person) holds a model's switch until it is safe. The
// new version is fetched and installed meanwhile; the old one goes on serving.

export function registerDefer(program: Command): void {
  program
    .command('defer')
    .description('hold a model\'s switch to a new version (fetched and installed meanwhile) until a time, for a while, or until --release')
    .argument('<model>', 'name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace when <model> has none', 'default')
    .option('--until <time>', 'hold until this RFC 3339 time (2026-12-02T15:00:00Z)')
    .option('--for <duration>', 'hold for this long (30m, 2h, 1h30m, 90s)')
    .option('--release', 'end the hold now: a waiting switch happens')
    .option('-o, --output <format>', 'output format: json, yaml')
    .option('--json', 'machine-readable output (the same as -o json)')
    .addHelpText(
      'after',
      '\nWithout --until or --for the hold lasts as long as deferral.maxSeconds allows (default 24 h), counted from when\n' +
        'it was first placed; a longer request is refused (DeferralTooLong). Running it again extends the hold within that cap.\n' +
        exitCodesHelp('defer'),
    )
    .action(async (ref: string, opts: { namespace: string; until?: string; for?: string; release?: boolean; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const { namespace, name } = parseModelRef(ref, opts.namespace);
      // Malformed input is refused before anything is opened (deferral-time.ts says the same again).
      if (opts.release && (opts.until !== undefined || opts.for !== undefined)) throw new ModeldError('BadRequest', '--release goes with neither --until nor --for');
      if (opts.until !== undefined && opts.for !== undefined) throw new ModeldError('BadRequest', '--until and --for do not go together');
      if (opts.until !== undefined && parseRfc3339(opts.until) === undefined) throw new ModeldError('BadRequest', `--until "${opts.until.slice(0, 80)}" is not an RFC 3339 time (like 2026-12-02T15:00:00Z)`);
      if (opts.for !== undefined && !parseDuration(opts.for)) throw new ModeldError('BadRequest', `--for "${opts.for.slice(0, 80)}" is not a duration (like 30m, 2h, 1h30m)`);
      if (opts.release) {
        const r = await withWriteTarget(config, 'modeld defer', async (t) =>
          t.kind === 'daemon'
            ? { ...(await t.client.call<DeferReleaseResult>('POST', '/v1/defer', { namespace, name, release: true }, 60_000)), daemon: true }
            : { ...releaseDeferral(t.deps, namespace, name), daemon: false },
        );
        if (isData(format)) return printData(format, r);
        process.stdout.write(`${r.model}: hold released; switching to the target${r.targetVersion ? ` (${r.targetVersion})` : ''} as usual\n`);
        if (!r.daemon) note('daemon not running: takes effect when `modeld run` starts');
        return;
      }
      const request = { until: opts.until, for: opts.for };
      const r = await withWriteTarget(config, 'modeld defer', async (t) =>
        t.kind === 'daemon'
          ? { ...(await t.client.call<DeferResult>('POST', '/v1/defer', { namespace, name, ...request }, 60_000)), daemon: true }
          : { ...defer(t.deps, namespace, name, request), daemon: false },
      );
      if (isData(format)) return printData(format, r);
      process.stdout.write(`${r.model}: switch deferred until ${r.deferredUntil} (serving ${r.servingVersion ?? 'nothing'}, target ${r.targetVersion ?? 'none'})\n`);
      note(`\`modeld defer --release ${r.model}\` ends the hold`);
      if (!r.daemon) note('daemon not running: takes effect when `modeld run` starts');
    });
}
