// The Node.js releases modeld runs on. package.json's `engines.node` states the same range
// (test/shared/node-support.test.ts keeps the two equal). Node 20 reached end of life in April 2026.

export const NODE_RANGE = '>=24.11 <25';
const MAJOR = 24;
const MIN_MINOR = 11;

/** Why this Node.js cannot run modeld, or undefined when it can. */
export function unsupportedNode(program: string, version: string = process.versions.node, execPath: string = process.execPath): string | undefined {
  const [major, minor] = version.split('.').map(Number);
  if (major === MAJOR && minor >= MIN_MINOR) return undefined;
  return `${program} needs Node.js ${NODE_RANGE} (Node 24 LTS); ${execPath} is Node.js ${version}`;
}

/** Exits with a clear line on stderr when this Node.js is outside NODE_RANGE. Call first, before importing the program. */
export function exitUnlessSupportedNode(program: string): void {
  const why = unsupportedNode(program);
  if (!why) return;
  process.stderr.write(`${program}: UnsupportedNode: ${why}\n`);
  process.exit(1);
}
