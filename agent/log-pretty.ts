import { Writable } from 'node:stream';

// pino's JSON lines made readable for a person at a terminal (journald keeps JSON): one line per
// record, `time LEVEL model@version message key=value...`. No extra package: pino-pretty is a
// dev tool with a dozen dependencies, and this is all a field technician needs.

const LEVELS: Record<string, [string, string]> = {
  trace: ['TRACE', '90'],
  debug: ['DEBUG', '36'],
  info: ['INFO ', '32'],
  warn: ['WARN ', '33'],
  error: ['ERROR', '31'],
  fatal: ['FATAL', '35'],
};
// pino's numbers, as older lines (and other pino programs) carry them.
const NUMBERED: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };
const OMIT = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'model', 'version']);

const fmtValue = (v: unknown) => (typeof v === 'string' ? (/^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v));

/** One JSON log line as text; a line that is not JSON is returned as it is. */
export function prettyLine(line: string, color = false): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line) as Record<string, unknown>;
    if (!rec || typeof rec !== 'object' || Array.isArray(rec)) return line;
  } catch {
    return line;
  }
  const paint = (code: string, s: string) => (color ? `\x1b[${code}m${s}\x1b[0m` : s);
  const t = typeof rec.time === 'number' ? new Date(rec.time).toISOString().slice(11, 23) : '';
  const [lvl, code] = LEVELS[typeof rec.level === 'number' ? NUMBERED[rec.level] : String(rec.level)] ?? [String(rec.level ?? '?').padEnd(5), '0'];
  const who = rec.model ? `${rec.model}${rec.version !== undefined ? `@${rec.version}` : ''} ` : '';
  const rest = Object.entries(rec)
    .filter(([k, v]) => !OMIT.has(k) && v !== undefined)
    .map(([k, v]) => `${paint('2', `${k}=`)}${fmtValue(v)}`)
    .join(' ');
  return `${paint('2', t)} ${paint(code, lvl)} ${paint('1', who)}${String(rec.msg ?? '')}${rest ? ` ${rest}` : ''}`;
}

/** A destination for pino that writes pretty lines to `out`. */
export function prettyStream(out: NodeJS.WritableStream, color = true): Writable {
  let buf = '';
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf += chunk.toString();
      let i: number;
      let text = '';
      while ((i = buf.indexOf('\n')) >= 0) {
        text += prettyLine(buf.slice(0, i), color) + '\n';
        buf = buf.slice(i + 1);
      }
      if (text) out.write(text);
      cb();
    },
    final(cb) {
      if (buf) out.write(prettyLine(buf, color) + '\n');
      cb();
    },
  });
}
