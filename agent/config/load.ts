import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { describeZodError } from '../../shared/index.js';
import type { z } from 'zod';
import { didYouMean } from '../did-you-mean.js';
import { ModeldError } from '../errors.js';
import { ConfigSchema, type Config } from './schema.js';

export const DEFAULT_CONFIG_PATH = '/etc/modeld/config.yaml';
const ENV_PREFIX = 'MODELD_';
/** MODELD_ variables that are not overrides: the config file's path, the node binary bin/modeld runs, edgecore's config. */
const NOT_OVERRIDES = new Set(['MODELD_CONFIG', 'MODELD_NODE', 'MODELD_EDGECORE']);

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

interface ZodDef {
  type: string;
  innerType?: { _zod: { def: ZodDef } };
  valueType?: { _zod: { def: ZodDef } };
  shape?: Record<string, unknown>;
}

/** The keys the schema knows at `path` (through defaults, optionals and records). */
function keysAt(schema: z.ZodType, path: PropertyKey[]): string[] {
  let def = (schema as unknown as { _zod: { def: ZodDef } })._zod.def;
  const unwrap = () => {
    while (def.innerType) def = def.innerType._zod.def;
  };
  unwrap();
  for (const key of path) {
    if (def.type === 'record' && def.valueType) def = def.valueType._zod.def;
    else if (def.type === 'object' && def.shape && String(key) in def.shape) def = (def.shape[String(key)] as { _zod: { def: ZodDef } })._zod.def;
    else return [];
    unwrap();
  }
  return def.type === 'object' && def.shape ? Object.keys(def.shape) : [];
}

/** zod's explanation, with each unknown key named by its full path and the closest known key. */
function describeConfigError(error: z.ZodError): string {
  const unknown = error.issues.flatMap((i) => {
    if (i.code !== 'unrecognized_keys') return [];
    const at = i.path.length ? `${i.path.join('.')}.` : '';
    return i.keys.map((k) => `unknown key "${at}${k}"${didYouMean(k, keysAt(ConfigSchema, i.path), at)}`);
  });
  const others = error.issues.filter((i) => i.code !== 'unrecognized_keys');
  const rest = others.length ? describeZodError({ ...error, issues: others } as z.ZodError) : '';
  return [...unknown.slice(0, 5), ...(rest ? [rest] : [])].join('; ');
}

/** Validates a config tree; the error names the path of the first bad keys. */
export function parseConfig(tree: unknown, source = 'config'): Config {
  const result = ConfigSchema.safeParse(tree ?? {});
  if (!result.success) {
    throw new ModeldError('ConfigInvalid', `${source}: ${describeConfigError(result.error)}`);
  }
  return result.data;
}

/** The layers a configuration is made of, before they are merged and validated. */
export interface ConfigLayers {
  /** The file's path, and whether it was there to read. */
  path: string;
  fileRead: boolean;
  file: Tree;
  defaults: Tree;
  env: Tree;
  /** Which environment variable set each path it sets (`broker.url` -> MODELD_BROKER__URL). */
  envNames: Map<string, string>;
}

export function readConfigLayers(opts: { path?: string; env?: NodeJS.ProcessEnv; defaults?: Tree }): ConfigLayers {
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
  const envNames = new Map<string, string>();
  for (const key of Object.keys(env)) {
    if (!key.startsWith(ENV_PREFIX) || env[key] === undefined || key === 'MODELD_CONFIG') continue;
    envNames.set(Object.keys(flatten(envOverrides({ [key]: env[key] })))[0] ?? '', key);
  }
  return { path, fileRead: text !== undefined, file: fileTree, defaults: opts.defaults ?? {}, env: envOverrides(env), envNames };
}

/** Validates the merged layers: file over edgecore defaults, environment over both. */
export function configFromLayers(l: ConfigLayers): Config {
  return parseConfig(merge(merge(l.defaults, l.file), l.env), l.fileRead ? l.path : 'config');
}

/** Leaf paths of a tree (`broker.tls.ca`); arrays, scalars and empty mappings are leaves. */
export function flatten(tree: unknown, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (tree && typeof tree === 'object' && !Array.isArray(tree) && Object.keys(tree).length) {
    for (const [k, v] of Object.entries(tree)) Object.assign(out, flatten(v, prefix ? `${prefix}.${k}` : k));
  } else if (prefix) out[prefix] = tree;
  return out;
}

/**
 * file -> edgecore defaults (when given) -> environment overrides -> validate. A missing file is
 * fine only when it is the default path (a node may run on defaults and environment alone).
 */
export function loadConfig(opts: { path?: string; env?: NodeJS.ProcessEnv; defaults?: Tree }): Config {
  return configFromLayers(readConfigLayers(opts));
}
