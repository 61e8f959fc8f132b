import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModeldError } from '../../agent/errors.js';
import { unpackArchive } from '../../agent/install/unpack.js';
import { listTree, rawTar, tarHeader, type RawEntry } from '../helpers/archives.js';

// The archive reader against random damage: real tar (and tar.gz) archives with files,
// directories and links, then mutated — bytes flipped in headers and bodies, header fields
// overwritten with hostile values, cuts, junk inserted. For every case: the unpack either
// installs inside its staging destination or refuses with a ModeldError and leaves nothing; it
// never throws anything else, never lets an error escape, and never writes, links or overwrites
// a byte outside the destination. Seeded; MODELD_PROPERTY_RUNS sets the number of cases.

const RUNS = Number(process.env.MODELD_PROPERTY_RUNS ?? 2000);
const SEED = Number(process.env.MODELD_PROPERTY_SEED ?? 20261201);
const LIMITS = { maxBytes: 4 * 1024 * 1024, maxEntries: 200, maxRatio: 100 };
const REFUSALS = new Set(['UnsafeArchive', 'CorruptArchive', 'UnsupportedArchive', 'ArchiveTooLarge', 'TooManyEntries', 'InstallFailed']);

let base: string;
let n = 0;
beforeAll(async () => void (base = await mkdtemp(join(tmpdir(), 'modeld-unpack-prop-'))));
afterAll(async () => rm(base, { recursive: true, force: true }));

const name = fc.stringMatching(/^[a-z0-9._-]{1,12}$/);
const hostilePath = fc.constantFrom('../x', '/etc/x', 'a/../../x', '..', '.', '', 'a//b', 'a/./b', '../../../../../../tmp/x', 'a\\..\\x', 'x\0y', 'é/ü', 'a'.repeat(250));
const entry: fc.Arbitrary<RawEntry> = fc.oneof(
  fc.record({ path: fc.tuple(name, name).map(([d, f]) => `${d}/${f}`), body: fc.uint8Array({ maxLength: 3000 }).map((b) => Buffer.from(b)) }),
  fc.record({ path: name.map((d) => `${d}/`), type: fc.constant('5') }),
  fc.record({ path: name, type: fc.constant('2'), linkpath: fc.oneof(name, hostilePath) }),
  fc.record({ path: name, type: fc.constant('1'), linkpath: fc.oneof(name, hostilePath, fc.constant('../secret.txt')) }),
  fc.record({ path: hostilePath, body: fc.constant('pwned') }),
  fc.record({ path: name, type: fc.constantFrom('3', '4', '6', '7', 'g', 'x', 'L', 'K', 'Z', '\0'), body: fc.constant('') }),
);

type Mutation =
  | { kind: 'flip'; at: number; xor: number }
  | { kind: 'cut'; at: number }
  | { kind: 'insert'; at: number; junk: Uint8Array }
  | { kind: 'field'; entry: number; offset: number; value: string };
const HEADER_FIELDS = [0, 100, 108, 116, 124, 136, 148, 156, 157, 257, 263, 345]; // name mode uid gid size mtime chksum type linkname magic version prefix
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), xor: fc.integer({ min: 1, max: 255 }) }),
  fc.record({ kind: fc.constant('cut' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), junk: fc.uint8Array({ minLength: 1, maxLength: 600 }) }),
  fc.record({ kind: fc.constant('field' as const), entry: fc.nat(), offset: fc.constantFrom(...HEADER_FIELDS), value: fc.constantFrom('77777777777', '-1', '99999999999999', 'zz', '\0', '0000000', '../../x', 'ustar', '7777777777777777') }),
);

/** Applies header-field mutations to the raw entries' headers, byte mutations to the whole stream. */
function build(entries: RawEntry[], mutations: Mutation[]): Buffer {
  const parts: Buffer[] = [];
  const headers: Buffer[] = [];
  for (const e of entries) {
    const h = tarHeader(e);
    headers.push(h);
    parts.push(h);
    if (e.body !== undefined) {
      const body = Buffer.from(e.body);
      parts.push(body, Buffer.alloc((512 - (body.length % 512)) % 512));
    }
  }
  for (const m of mutations) if (m.kind === 'field' && headers.length) headers[m.entry % headers.length].write(m.value, m.offset, 'latin1');
  let tar = Buffer.concat([...parts, Buffer.alloc(1024)]);
  for (const m of mutations) {
    if (m.kind === 'flip' && tar.length) tar[m.at % tar.length] ^= m.xor;
    else if (m.kind === 'cut') tar = tar.subarray(0, m.at % (tar.length + 1));
    else if (m.kind === 'insert') tar = Buffer.concat([tar.subarray(0, m.at % (tar.length + 1)), Buffer.from(m.junk), tar.subarray(m.at % (tar.length + 1))]);
  }
  return tar;
}

/** Every path under `dest` is a plain file, directory or a link that stays inside it. */
async function assertContained(dest: string): Promise<void> {
  const root = resolve(dest);
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir)) {
      const p = join(dir, e);
      const st = await lstat(p);
      if (st.isSymbolicLink()) {
        const target = resolve(dirname(p), await readlink(p));
        expect(target === root || target.startsWith(root + sep), `${p} -> ${target} leaves the destination`).toBe(true);
      } else if (st.isDirectory()) await walk(p);
      else expect(st.isFile(), `${p} is not a plain file`).toBe(true);
    }
  };
  await walk(root);
}

describe('the archive reader, on randomly damaged archives', { timeout: 600_000 }, () => {
  // Found by the property below (seed 20261201, case 215, shrunk): a .tar.gz cut inside its second
  // entry's body. The refusal destroyed the entry in flight, tar then wrote the body's last byte
  // into it as it ended, and "write after a stream was destroyed" escaped as an unhandled rejection.
  it('a .tar.gz cut inside an entry body is refused CorruptArchive, and nothing escapes', async () => {
    const entries: RawEntry[] = [{ path: '-', type: '2', linkpath: 'a/./b' }, { path: 'a/-', body: Buffer.from([0]) }, { path: '-', type: '3', body: '' }];
    const bytes = gzipSync(build(entries, [{ kind: 'cut', at: 1025 }]));
    const escaped: unknown[] = [];
    const onEscape = (err: unknown) => escaped.push(err);
    process.on('unhandledRejection', onEscape);
    try {
      const dest = join(base, 'regression', 'staging', 'job');
      await mkdir(dirname(dest), { recursive: true });
      const source = (async function* () { for (let i = 0; i < bytes.length; i += 777) yield bytes.subarray(i, i + 777); })();
      await expect(unpackArchive(source, dest, LIMITS)).rejects.toMatchObject({ code: 'CorruptArchive' });
      await new Promise((r) => setImmediate(r));
      expect(escaped).toEqual([]);
    } finally {
      process.off('unhandledRejection', onEscape);
    }
  });

  it(`installs inside staging or refuses with a reason; nothing else, nothing outside (${RUNS} cases, seed ${SEED})`, async () => {
    // An error that escapes the unpack (an 'error' event or a rejection nobody handles) fails the case it came from.
    const escaped: unknown[] = [];
    const onEscape = (err: unknown) => escaped.push(err);
    process.on('unhandledRejection', onEscape);
    process.on('uncaughtException', onEscape);
    try {
    await fc.assert(
      fc.asyncProperty(fc.array(entry, { minLength: 1, maxLength: 12 }), fc.array(mutation, { maxLength: 4 }), fc.boolean(), fc.boolean(), async (entries, mutations, gzip, fromFile) => {
        const root = join(base, `case-${n++}`);
        const dest = join(root, 'staging', 'job');
        await mkdir(join(root, 'staging'), { recursive: true });
        await writeFile(join(root, 'secret.txt'), 'secret');
        const tar = build(entries, mutations);
        const bytes = gzip ? gzipSync(tar) : tar;
        const archive = join(root, 'archive');
        await writeFile(archive, bytes);
        const before = await listTree(root);
        const source = fromFile ? archive : (async function* () { for (let i = 0; i < bytes.length; i += 777) yield bytes.subarray(i, i + 777); })();
        const outcome = await unpackArchive(source, dest, LIMITS).then(
          () => 'installed' as const,
          (err: unknown) => err,
        );
        if (outcome === 'installed') {
          await assertContained(dest);
          await rm(dest, { recursive: true, force: true, maxRetries: 2 }).catch(async () => {
            // read-only trees: make them writable to clean up
            await import('node:child_process').then(({ execFileSync }) => execFileSync('chmod', ['-R', 'u+w', dest]));
            await rm(dest, { recursive: true, force: true });
          });
        } else {
          expect(outcome, String(outcome)).toBeInstanceOf(ModeldError);
          expect(REFUSALS.has((outcome as ModeldError).code), (outcome as ModeldError).code).toBe(true);
          expect((outcome as ModeldError).message.length).toBeGreaterThan(0);
          expect(await lstat(dest).catch(() => undefined), 'a refusal leaves no destination').toBeUndefined();
        }
        expect(await listTree(root)).toEqual(before);
        expect(await readFile(join(root, 'secret.txt'), 'utf8')).toBe('secret');
        expect((await stat(join(root, 'secret.txt'))).nlink).toBe(1);
        await rm(root, { recursive: true, force: true });
        await new Promise((r) => setImmediate(r));
        expect(escaped.splice(0).map((e) => String((e as Error)?.stack ?? e))).toEqual([]);
      }),
      { seed: SEED, numRuns: RUNS },
    );
    } finally {
      process.off('unhandledRejection', onEscape);
      process.off('uncaughtException', onEscape);
    }
  });
});
