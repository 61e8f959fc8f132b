import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { prettyLine } from '../../agent/log-pretty.js';
import { createLogger } from '../../agent/log.js';

// Logs: JSON lines for journald, readable text when a person runs modeld in a terminal.

const ROOT = resolve(import.meta.dirname, '../..');

describe('pretty logs', () => {
  it('formats a record with its model and version first, and leaves non-JSON alone', () => {
    const line = JSON.stringify({ level: 40, time: Date.UTC(2025, 0, 1, 12, 3, 4, 5), pid: 1, name: 'modeld', model: 'default/resnet', version: '2', phase: 'Failed', reason: 'NotReady', msg: 'version 2 failed' });
    expect(prettyLine(line)).toBe('12:03:04.005 WARN  default/resnet@2 version 2 failed phase=Failed reason=NotReady');
    expect(prettyLine('not json {')).toBe('not json {');
    expect(prettyLine('[1,2]')).toBe('[1,2]');
    expect(prettyLine(JSON.stringify({ level: 30, msg: 'x', err: 'a b' }))).toBe(' INFO  x err="a b"');
    expect(prettyLine(JSON.stringify({ level: 'warn', msg: 'named' }))).toBe(' WARN  named');
  });

  it('JSON lines carry level names, as journald and log shippers read them', () => {
    const out = new PassThrough();
    const log = createLogger({ destination: out, level: 'trace' });
    for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) log[level]('x');
    const levels = out.read().toString().trim().split('\n').map((l: string) => JSON.parse(l).level);
    expect(levels).toEqual(['trace', 'debug', 'info', 'warn', 'error', 'fatal']);
  });

  it("strips terminal escapes from every message and field (a runtime's coloured output)", () => {
    const out = new PassThrough();
    // What onnxruntime writes on its stderr: colour (SGR), and other control sequences.
    const raw = '\x1b[0;93m2025-01-01 [W:onnxruntime:Default] Failed to persist telemetry device ID\x1b[m';
    const log = createLogger({ destination: out }).child({ model: 'default/m', line: raw });
    log.warn({ stream: 'stderr', nested: { text: '\x1b]0;title\x07ok\x1b[2K' } }, raw);
    log.info(`bell\x07 and backspace\x08 and a cursor move \x1b[10;20H, tab\tkept`);
    const [a, b] = out.read().toString().trim().split('\n').map((l: string) => JSON.parse(l));
    expect(a.msg).toBe('2025-01-01 [W:onnxruntime:Default] Failed to persist telemetry device ID');
    expect(a.line).toBe(a.msg);
    expect(a.nested).toEqual({ text: 'ok' });
    expect(b.msg).toBe('bell and backspace and a cursor move , tab\tkept');
  });

  it('createLogger writes JSON by default and text with pretty', () => {
    const json = new PassThrough();
    createLogger({ destination: json }).child({ model: 'default/m', version: '1' }).info({ bytes: 5 }, 'hello');
    expect(JSON.parse(json.read().toString())).toMatchObject({ model: 'default/m', version: '1', bytes: 5, msg: 'hello' });
    const text = new PassThrough();
    createLogger({ destination: text, pretty: true }).child({ model: 'default/m', version: '1' }).info({ bytes: 5 }, 'hello');
    expect(text.read().toString()).toMatch(/^\d\d:\d\d:\d\d\.\d{3} INFO  default\/m@1 hello bytes=5\n$/);
  });

  it('a terminal gets text, a pipe (journald) gets JSON', (ctx) => {
    if (spawnSync('script', ['--version']).status !== 0) return ctx.skip();
    const dir = mkdtempSync(join(tmpdir(), 'modeld-pretty-'));
    try {
      const prog = join(dir, 'log.ts');
      writeFileSync(prog, `import { createLogger } from '${join(ROOT, 'agent/log.ts')}';\ncreateLogger().child({ model: 'default/m' }).warn('careful');\n`);
      const cmd = `${process.execPath} --import tsx ${prog}`;
      const piped = spawnSync(process.execPath, ['--import', 'tsx', prog], { cwd: ROOT, encoding: 'utf8' });
      expect(JSON.parse(piped.stdout.trim())).toMatchObject({ level: 'warn', model: 'default/m', msg: 'careful' });
      // util-linux script(1) gives the child a pseudo-terminal.
      const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: ROOT, encoding: 'utf8' });
      expect(tty.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toMatch(/WARN  default\/m careful/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
