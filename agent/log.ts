import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * JSON lines to stdout (journald keeps them). Every line about a model carries `model`
 * (namespace/name) and, when known, `version`: use `log.child({ model, version })`.
 */
export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino({ level: opts.level ?? 'info', name: opts.name ?? 'modeld', base: { pid: process.pid } }, opts.destination ?? process.stdout);
}

/** A logger that drops everything: for tests that do not look at logs. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
