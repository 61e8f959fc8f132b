import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { describeZodError } from '../../shared/index.js';
import { ModeldError } from '../errors.js';
import { ConfigSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/modeld/config.yaml';
const ENV_PREFIX = 'MODELD_';
/** MODELD_ variables that are not overrides: the config file's path, and the node binary bin/modeld runs. */
const NOT_OVERRIDES = new Set(['MODELD_CONFIG', 'MODELD_NODE']);

type Tree = Record<string, unknown>;

/**
 * Environment overrides: `MODELD_` then the key path, `__` between levels, `_` inside a key
 * becoming camelCase: MODELD_BROKER__URL=... sets broker.url, MODELD_STATE_DIR sets stateDir,
 * MODELD_LIMITS__MESSAGE_BYTES sets limits.messageBytes. Values are read as YAML scalars, so
 * numbers, booleans and [lists] work. MODELD_CONFIG and MODELD_NODE are not overrides.
 */
export function envOverrides(env: NodeJS.ProcessEnv): Tree {
  const out: Tree = {};
  for (const [key, raw] of Object.entries(env)) {
    if (!key.startsWith(ENV_PREFIX) || raw === undefined || NOT_OVERRIDES.has(key)) continue;
    const path = key
      .slice(ENV_PREFIX.length)
      .split('__')
      .map((part) => part.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase()));
    let value: unknown;
    try {
      value = parseYaml(raw);
    } catch {
      value = raw;
    }
    setPath(out, path, value ?? raw);
  }
  return out;
}

function setPath(tree: Tree, path: string[], value: unknown) {
  let node = tree;
  for (const key of path.slice(0, -1)) {
    if (typeof node[key] !== 'object' || node[key] === null) node[key] = {};
    node = node[key] as Tree;
  }
  node[path.at(-1)!] = value;
}

function merge(base: Tree, over: Tree): Tree {
  const out: Tree = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] =
      v && typeof v === 'object' && !Array.isArray(v) && b && typeof b === 'object' && !Array.isArray(b)
        ? merge(b as Tree, v as Tree)
        : v;
  }
  return out;
}

/** Validates a config tree; the error names the path of the first bad keys. */
export function parseConfig(tree: unknown, source = 'config'): Config {
  const result = ConfigSchema.safeParse(tree ?? {});
  if (!result.success) {
    throw new ModeldError('ConfigInvalid', `${source}: ${describeZodError(result.error)}`);
  }
  return result.data;
}

/**
 * file -> edgecore defaults (when given) -> environment overrides -> validate. A missing file is
 * fine only when it is the default path (a node may run on defaults and environment alone).
 */
export function loadConfig(opts: {
  path?: string;
  env?: NodeJS.ProcessEnv;
  defaults?: Tree;
}): Config {
  const env = opts.env ?? process.env;
  const path = opts.path ?? env.MODELD_CONFIG ?? DEFAULT_CONFIG_PATH;
  let fileTree: Tree = {};
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (!(code === 'ENOENT' && path === DEFAULT_CONFIG_PATH)) {
      throw new ModeldError('ConfigInvalid', `cannot read config file ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (text !== undefined) {
    if (text.length > 1024 * 1024) throw new ModeldError('ConfigInvalid', `${path}: config file larger than 1 MiB`);
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      throw new ModeldError('ConfigInvalid', `${path}: not valid YAML: ${(err as Error).message}`, { cause: err });
    }
    if (parsed !== null && parsed !== undefined && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new ModeldError('ConfigInvalid', `${path}: (root): must be a mapping of keys`);
    }
    fileTree = (parsed ?? {}) as Tree;
  }
  const tree = merge(merge(opts.defaults ?? {}, fileTree), envOverrides(env));
  return parseConfig(tree, text !== undefined ? path : 'config');
}
