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
      expect(JSON.parse(piped.stdout.trim())).toMatchObject({ level: 40, model: 'default/m', msg: 'careful' });
      // util-linux script(1) gives the child a pseudo-terminal.
      const tty = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: ROOT, encoding: 'utf8' });
      expect(tty.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toMatch(/WARN  default\/m careful/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
