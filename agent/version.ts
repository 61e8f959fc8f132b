import { readFileSync } from 'node:fs';

/** The agent's own version, from package.json (found from source and from dist/). */
export const AGENT_VERSION: string = (() => {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name: string; version: string }).version;
    } catch {
      // try the next location
    }
  }
  return '0.0.0';
})();
