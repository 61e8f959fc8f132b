import type { Command } from 'commander';
import { sleep } from '../../shared/sleep.js';
import { readEvents, type EventsQuery } from '../admin/events-view.js';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';
import type { EventRecord } from '../store/events.js';
import { exitCodesHelp } from './exit-codes.js';
import { addOutputOptions, isData, outputFormat, printData } from './output-format.js';
import { withReadTarget } from './target.js';

// `modeld events`: the node's history, newest first; `--follow` prints the last ones oldest
// first and then each new one as it is recorded, as `journalctl -f` does, until Ctrl-C (exit 0).

async function fetchEvents(config: Config, q: EventsQuery): Promise<{ daemon: boolean; events: EventRecord[] }> {
  return withReadTarget(config, async (t) => {
    if (t.kind === 'daemon') {
      const p = new URLSearchParams({ limit: String(q.limit) });
      if (q.model) p.set('model', `${q.model.namespace}/${q.model.name}`);
      if (q.after !== undefined) p.set('after', String(q.after));
      return { daemon: true, events: (await t.client.call<{ events: EventRecord[] }>('GET', `/v1/events?${p}`, undefined, 30_000)).events };
    }
    if (!t.store) {
      if (q.model) throw new ModeldError('NotFound', `no model ${q.model.namespace}/${q.model.name} on this node (no state in ${config.stateDir})`);
      return { daemon: false, events: [] };
    }
    return { daemon: false, events: readEvents(t.store, q) };
  });
}

const line = (e: EventRecord) => `${new Date(e.time).toISOString()}  ${e.namespace ? `${e.namespace}/${e.name}` : '-'}  ${e.kind}  ${e.message}\n`;

export function registerEvents(program: Command): void {
  const cmd = program
    .command('events')
    .description('recent events (phase changes, failures, seeds, rollbacks, gc), newest first; --follow for new ones as they happen')
    .argument('[model]', 'only this model: name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace of [model] when it has none', 'default')
    .option('--limit <n>', 'how many', '50')
    .option('-f, --follow', 'print the last --limit events oldest first, then new ones as they are recorded (Ctrl-C to stop)')
    .option('--interval <ms>', 'how often --follow looks for new events', '500');
  addOutputOptions(cmd, ['json', 'yaml'])
    .addHelpText('after', exitCodesHelp('events'))
    .action(async (ref: string | undefined, opts: { namespace: string; limit: string; follow?: boolean; interval: string; output?: string; json?: boolean }) => {
      const format = outputFormat(opts, ['json', 'yaml']);
      const config = loadConfig({ path: program.opts().config });
      const model = ref ? parseModelRef(ref, opts.namespace) : undefined;
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ModeldError('BadRequest', '--limit must be an integer from 1 to 1000');
      const interval = Number(opts.interval);
      if (!Number.isInteger(interval) || interval < 50) throw new ModeldError('BadRequest', '--interval must be an integer of at least 50 (ms)');
      const first = await fetchEvents(config, { model, limit });
      if (!opts.follow) {
        if (isData(format)) return printData(format, first);
        for (const e of first.events) process.stdout.write(line(e));
        return;
      }
      // One JSON document per line when following (a stream a script can read line by line).
      const print = (e: EventRecord) => process.stdout.write(format === 'text' ? line(e) : format === 'json' ? JSON.stringify(e) + '\n' : `---\n${JSON.stringify(e)}\n`);
      const stop = new AbortController();
      process.once('SIGINT', () => stop.abort());
      process.once('SIGTERM', () => stop.abort());
      let last = first.events.reduce((max, e) => Math.max(max, e.id), 0);
      for (const e of [...first.events].reverse()) print(e);
      while (!stop.signal.aborted) {
        await sleep(interval, stop.signal).catch(() => undefined);
        if (stop.signal.aborted) break;
        const next = await fetchEvents(config, { model, limit: 1000, after: last }).catch((err: unknown) => {
          // The model's history can be trimmed away meanwhile; keep following.
          if (err instanceof ModeldError && err.code === 'NotFound') return { events: [] as EventRecord[] };
          throw err;
        });
        for (const e of next.events) {
          print(e);
          last = Math.max(last, e.id);
        }
      }
    });
}
