import type { EdgecoreDetection } from './edgecore.js';
import type { Config } from './schema.js';
import { configFromLayers, flatten, readConfigLayers } from './load.js';

// `modeld config view`: the effective configuration, one key per line, each with where its value
// came from — the schema's default, the config file, edgecore.yaml, or an environment variable —
// in the order they override each other (default < edgecore.yaml < file < environment).
// Secrets are shown as <redacted>.

export type ConfigSource = 'default' | 'edgecore' | 'file' | 'env';

export interface ConfigEntry {
  key: string;
  value: unknown;
  source: ConfigSource;
  /** The file's path, or the environment variable's name. */
  from?: string;
}

export interface ConfigView {
  file: { path: string; read: boolean };
  edgecore: { path: string; found: boolean };
  entries: ConfigEntry[];
}

const SECRET = /password|secret|token/i;

/** Whether the layer sets `key` (or an ancestor of it as a whole value, e.g. a list). */
function sets(layer: Record<string, unknown>, key: string): boolean {
  return Object.keys(layer).some((k) => k === key || key.startsWith(`${k}.`) || k.startsWith(`${key}.`));
}

export function explainConfig(opts: { path?: string; env?: NodeJS.ProcessEnv; edgecore: EdgecoreDetection }): { config: Config; view: ConfigView } {
  const layers = readConfigLayers({ path: opts.path, env: opts.env, defaults: opts.edgecore.defaults });
  const config = configFromLayers(layers);
  const file = flatten(layers.file);
  const edge = flatten(layers.defaults);
  const env = flatten(layers.env);
  const entries = Object.entries(flatten(config)).map(([key, value]): ConfigEntry => {
    const shown = SECRET.test(key) && value !== undefined ? '<redacted>' : value;
    if (sets(env, key)) {
      const name = [...layers.envNames].find(([k]) => k === key || key.startsWith(`${k}.`) || k.startsWith(`${key}.`))?.[1];
      return { key, value: shown, source: 'env', from: name };
    }
    if (sets(file, key)) return { key, value: shown, source: 'file', from: layers.path };
    if (sets(edge, key)) return { key, value: shown, source: 'edgecore', from: opts.edgecore.path };
    return { key, value: shown, source: 'default' };
  });
  return { config, view: { file: { path: layers.path, read: layers.fileRead }, edgecore: { path: opts.edgecore.path, found: opts.edgecore.found }, entries } };
}
