import { pino, type Logger } from 'pino';
import { prettyStream } from './log-pretty.js';

export type { Logger };

// Terminal control sequences: CSI (colours, cursor moves), OSC (titles, links), the other
// two-byte escapes, and C0 controls other than tab and newline. A runtime's output (onnxruntime
// colours its warnings) is logged line by line; in JSON they are noise a log search trips on.
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-Z\\-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

/** `s` without terminal escapes and control characters (tab and newline kept). */
export const stripEscapes = (s: string): string => (s.includes('\x1b') || /[\x00-\x08\x0b-\x1f\x7f]/.test(s) ? s.replace(ESCAPES, '') : s);

/** Strings anywhere in a log record's fields, cleaned; what has nothing to clean is returned as is. */
function clean<T>(value: T, depth = 0): T {
  if (typeof value === 'string') return stripEscapes(value) as T;
  if (depth > 8 || !value || typeof value !== 'object' || value instanceof Error) return value;
  if (Array.isArray(value)) return value.map((v) => clean(v, depth + 1)) as T;
  if (Object.getPrototypeOf(value) !== Object.prototype) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = clean(v, depth + 1);
  return out as T;
}

/**
 * JSON lines to stdout (journald keeps them), with level names (`"level":"warn"`). Every line
 * about a model carries `model` (namespace/name) and, when known, `version`: use
 * `log.child({ model, version })`. Terminal escapes are stripped from every message and field.
 * Pretty text instead when a person runs it in a terminal (stdout is a TTY), or with `pretty`.
 */
export function createLogger(opts: { level?: string; name?: string; destination?: NodeJS.WritableStream; pretty?: boolean } = {}): Logger {
  const out = opts.destination ?? process.stdout;
  const pretty = opts.pretty ?? (opts.destination === undefined && process.stdout.isTTY === true);
  const root = pino(
    {
      level: opts.level ?? 'info',
      name: opts.name ?? 'modeld',
      base: { pid: process.pid },
      formatters: {
        level: (label) => ({ level: label }),
        log: (record) => clean(record),
      },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? stripEscapes(a) : a)) as Parameters<typeof method>);
        },
      },
    },
    pretty ? prettyStream(out, opts.destination === undefined) : out,
  );
  // pino formats a child's bindings without the bindings formatter: clean them on the way in
  // (children are made from their parent's prototype, so they all inherit this).
  const child = root.child;
  root.child = function cleanChild(this: Logger, bindings, options) {
    return child.call(this, clean(bindings), options);
  } as typeof root.child;
  return root;
}

/** A logger that drops everything: for tests that do not look at logs. */
export const silentLogger = (): Logger => pino({ level: 'silent' });
