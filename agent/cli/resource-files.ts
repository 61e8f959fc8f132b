import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseResources } from '../admin/resource.js';
import type { ModelContent } from '../../shared/index.js';
import { ModeldError } from '../errors.js';

// `-f` as kubectl takes it: a file, `-` for stdin, or a directory (its .yaml, .yml and .json
// files in name order; with -R its subdirectories too), given once or several times. Every
// resource of every file is read and validated before anything is applied.

const RESOURCE_FILE = /\.(ya?ml|json)$/i;

const cannotRead = (file: string, err: unknown) => {
  const e = err as NodeJS.ErrnoException;
  return new ModeldError('BadRequest', `cannot read ${file}: ${e.code === 'ENOENT' ? 'no such file' : (e.code ?? e.message)}`);
};

/** The file's text ('-' reads stdin); BadRequest when it cannot be read. */
export function readInputFile(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw cannotRead(file, err);
  }
}

function filesOf(path: string, recursive: boolean): string[] {
  if (path === '-') return [path];
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw cannotRead(path, err);
  }
  if (!st.isDirectory()) return [path];
  const out: string[] = [];
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const p = join(path, entry.name);
    if (entry.isDirectory()) {
      if (recursive) out.push(...filesOf(p, true));
    } else if (RESOURCE_FILE.test(entry.name)) out.push(p);
  }
  return out;
}

/** Every resource named by the -f arguments, validated; BadRequest naming the file (and document) of the first problem. */
export function readResources(paths: string[], opts: { namespace: string; recursive?: boolean }): ModelContent[] {
  const out: ModelContent[] = [];
  for (const path of paths) {
    const files = filesOf(path, opts.recursive ?? false);
    if (!files.length) throw new ModeldError('BadRequest', `${path}: no .yaml, .yml or .json files in the directory`);
    for (const f of files) out.push(...parseResources(readInputFile(f), f, opts.namespace));
  }
  const seen = new Set<string>();
  for (const c of out) {
    const key = `${c.metadata.namespace}/${c.metadata.name}`;
    if (seen.has(key)) throw new ModeldError('BadRequest', `${key} is in the input more than once`);
    seen.add(key);
  }
  return out;
}

/** commander's collector for a repeatable -f. */
export const collect = (value: string, previous: string[] = []): string[] => [...previous, value];
