import { pino, type Logger } from 'pino';
import { prettyStream } from '../shared/log-pretty.js';

// The controller's logs go to stderr: JSON lines (what a cluster's log collector wants), or
// readable text when stderr is a terminal (someone running it by hand).

export function controllerLogger(level: string, opts: { pretty?: boolean; destination?: NodeJS.WritableStream } = {}): Logger {
  const out = opts.destination ?? process.stderr;
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stderr.isTTY === true);
  return pino({ level, name: 'modeld-controller' }, pretty ? prettyStream(out, opts.destination === undefined) : (out as NodeJS.WritableStream & { write(s: string): boolean }));
}
