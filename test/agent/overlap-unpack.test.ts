import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { unpackWhileFetching } from '../../agent/reconcile/overlap-unpack.js';
import { rawTar, type RawEntry } from '../helpers/archives.js';
import { waitFor } from '../helpers/wait.js';

// The overlapped unpack in-process, with the partial file driven by the test: the download's
// "start over on other bytes" happens in one synchronous truncate-and-write, so the tail can never
// see the file shorter than what it read — the case a truncation check alone cannot catch.

let dir: string;
beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'overlap-unpack-'))));
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const limits = async () => ({ maxBytes: 1e10, maxEntries: 1e6 });

/** Same names in A and B, contents that say which object each file is from. */
function objects(files = 4000, gzip = true): { a: Buffer; b: Buffer; bFiles: Map<string, Buffer> } {
  const entries = (tag: string): RawEntry[] => Array.from({ length: files }, (_, i) => ({ path: `w/f${i}.bin`, body: Buffer.concat([Buffer.from(`${tag}:${i}:`), randomBytes(1000)]) }));
  const pack = (e: RawEntry[]) => (gzip ? gzipSync(rawTar(e)) : rawTar(e));
  const b = entries('B');
  return { a: pack(entries('A')), b: pack(b), bFiles: new Map(b.map((e) => [e.path, Buffer.from(e.body!)])) };
}

function overlap(partialPath: string, sha: string) {
  return unpackWhileFetching({ partialPath, sha256: sha, staging: join(dir, 'staging', 'x'), log: silentLogger(), signal: new AbortController().signal, limits });
}

describe('unpackWhileFetching', () => {
  it.each([['.tar.gz', true], ['.tar', false]])('drops a staged %s tree made partly from an object the download then replaced, however the tail read it', async (_kind, gzip) => {
    const { a, b, bFiles } = objects(4000, gzip);
    const partial = join(dir, 'partial');
    writeFileSync(partial, a.subarray(0, Math.floor(a.length / 2)));
    const o = overlap(partial, sha256(b));
    // The unpacker is under way on A's bytes...
    await waitFor(() => existsSync(join(dir, 'staging', 'x', 'w')) && readdirSync(join(dir, 'staging', 'x', 'w')).length > 10, 30_000, 'the unpack to start');
    // ...when the download starts over and writes B (Range answered 200 with the new object).
    writeFileSync(partial, b);
    const promoted = join(dir, 'promoted');
    const outcome = await o.finish(b.length, partial, async (staging) => cpSync(staging, promoted, { recursive: true }));
    if (outcome.kind === 'installed') {
      // Only acceptable if what was promoted is B, file for file.
      const wrong = [...bFiles].filter(([rel, data]) => !readFileSync(join(promoted, rel)).equals(data)).map(([rel]) => rel);
      expect(wrong.slice(0, 5)).toEqual([]);
    }
    expect(outcome).toMatchObject({ kind: 'fallback' });
    expect(existsSync(join(dir, 'staging', 'x'))).toBe(false);
  });

  it('promotes a tree unpacked from exactly the verified bytes', async () => {
    const { b, bFiles } = objects(200);
    const partial = join(dir, 'partial');
    writeFileSync(partial, b);
    const promoted = join(dir, 'promoted');
    const outcome = await overlap(partial, sha256(b)).finish(b.length, partial, async (staging) => cpSync(staging, promoted, { recursive: true }));
    expect(outcome).toEqual({ kind: 'installed' });
    for (const [rel, data] of bFiles) expect(readFileSync(join(promoted, rel)).equals(data)).toBe(true);
  });

  it('a refusal of the verified bytes stands for the archive (no second unpack); one of other bytes does not', async () => {
    const hostile = gzipSync(rawTar([{ path: '../escape', body: 'x' }, ...Array.from({ length: 20 }, (_, i) => ({ path: `f${i}`, body: randomBytes(4096) }))]));
    const partial = join(dir, 'partial');
    writeFileSync(partial, hostile);
    const refused = await overlap(partial, sha256(hostile)).finish(hostile.length, partial, async () => {
      throw new Error('must not promote');
    });
    expect(refused).toMatchObject({ kind: 'refused', error: { code: 'UnsafeArchive' } });

    // The same refusal, but the download then delivered other (good) bytes: unpack those.
    const good = gzipSync(rawTar([{ path: 'ok.bin', body: 'fine' }]));
    writeFileSync(partial, hostile);
    const o = overlap(partial, sha256(good));
    mkdirSync(join(dir, 'blob'));
    writeFileSync(join(dir, 'blob', 'good'), good);
    expect(await o.finish(good.length, join(dir, 'blob', 'good'), async () => {})).toMatchObject({ kind: 'fallback' });
  });
});
