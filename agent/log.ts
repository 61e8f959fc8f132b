import { pino, type Logger } from 'pino';
import { prettyStream } from './log-pretty.js';

export type { Logger };

/**
 * JSON lines to stdout (journald keeps them). Every line about a model carries `model`
 * (namespace/name) and, when known, `version`: use `log.child({ model, version })`.
 * Pretty text instead when a person runs it in a terminal (stdout is a TTY), or with `pretty`.
 */
export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream; pretty?: boolean } = {}): Logger {
  const out = opts.destination ?? process.stdout;
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  return pino({ level: opts.level ?? 'info', name: opts.name ?? 'modeld', base: { pid: process.pid } }, pretty ? prettyStream(out, opts.destination === undefined) : out);
}

/** A logger that drops everything: for tests that do not look at logs. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
