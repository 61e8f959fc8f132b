import type { Command } from 'commander';
import { parseModelRef } from '../admin/status-view.js';
import { loadConfig } from '../config/load.js';
import { ModeldError } from '../errors.js';
import type { EventRecord } from '../store/events.js';
import { openReadOnly } from './direct.js';
import { printJson } from './output.js';
import { daemonClient } from './target.js';

export function registerEvents(program: Command): void {
  program
    .command('events')
    .description('recent events (phase changes, failures, seeds, rollbacks, gc), newest first')
    .argument('[model]', 'only this model: name or namespace/name')
    .option('-n, --namespace <ns>', 'namespace of [model] when it has none', 'default')
    .option('--limit <n>', 'how many', '50')
    .option('--json', 'machine-readable output')
    .action(async (ref: string | undefined, opts: { namespace: string; limit: string; json?: boolean }) => {
      const config = loadConfig({ path: program.opts().config });
      const model = ref ? parseModelRef(ref, opts.namespace) : undefined;
      const limit = Number(opts.limit);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ModeldError('BadRequest', '--limit must be an integer from 1 to 1000');
      const client = await daemonClient(config).catch((err: unknown) => {
        if (err instanceof ModeldError && err.code === 'DaemonNotRunning') return undefined;
        throw err;
      });
      let events: EventRecord[];
      if (client) {
        const q = new URLSearchParams({ limit: String(limit), ...(model ? { model: `${model.namespace}/${model.name}` } : {}) });
        events = (await client.call<{ events: EventRecord[] }>('GET', `/v1/events?${q}`, undefined, 30_000)).events;
      } else {
        const ro = openReadOnly(config);
        try {
          events = ro ? ro.source.store.events.recent(limit, model) : [];
        } finally {
          ro?.close();
        }
      }
      if (opts.json) return printJson({ daemon: !!client, events });
      for (const e of events) {
        const who = e.namespace ? `${e.namespace}/${e.name}` : '-';
        process.stdout.write(`${new Date(e.time).toISOString()}  ${who}  ${e.kind}  ${e.message}\n`);
      }
    });
}
