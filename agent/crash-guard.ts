import type { Logger } from './log.js';
import type { EventTable } from './store/events.js';

// The daemon's crash policy. Bad input, a dead peer or a broken stream fails that model's step
// with a reason where it happens; this is the net under that: an error that escapes every handler
// (a throw from a timer, an 'error' event nobody listens to, a promise nobody awaited) is a bug,
// but not one worth dropping every model the node serves. It is logged with its stack, counted
// (modeld_escaped_errors_total), recorded in the store, and the daemon goes on; the next start
// says what escaped in the run before.

export type EscapeOrigin = 'uncaughtException' | 'unhandledRejection';

const ESCAPED = 'EscapedError';
const STARTED = 'Started';

export class CrashGuard {
  private events?: EventTable;
  private onEscape?: (origin: EscapeOrigin) => void;

  constructor(private readonly log: Logger) {}

  /** From now on nothing that escapes ends the process. */
  install(): void {
    process.on('uncaughtException', (err) => this.escaped('uncaughtException', err));
    process.on('unhandledRejection', (err) => this.escaped('unhandledRejection', err));
  }

  /** Once the store is open: escapes are recorded, and the last run's are reported. */
  attach(deps: { events: EventTable; onEscape?: (origin: EscapeOrigin) => void }): void {
    this.events = deps.events;
    this.onEscape = deps.onEscape;
    reportPreviousRun(deps.events, this.log);
  }

  private escaped(origin: EscapeOrigin, err: unknown): void {
    const text = err instanceof Error ? (err.stack ?? `${err.name}: ${err.message}`) : String(err);
    // Nothing in here may throw again: it would re-enter this handler.
    try {
      this.log.error({ err: text, origin }, 'an error escaped every handler; the daemon keeps running');
      this.onEscape?.(origin);
      this.events?.add({ kind: ESCAPED, message: `${origin}: ${text}` });
    } catch {
      // the log, the metric and the store are best effort here
    }
  }
}

/** Logs what escaped since the previous start (one line), then marks this start. */
function reportPreviousRun(events: EventTable, log: Logger): void {
  const escaped = events.since(STARTED, ESCAPED);
  if (escaped.length) log.warn({ count: escaped.length, last: escaped[0].message, at: new Date(escaped[0].time).toISOString() }, 'errors escaped in the previous run');
  events.add({ kind: STARTED, message: 'modeld run started' });
}
