// npm run bench -- <delivery|serving|controller|rollout|edge|all> [--runs N] [--json] [--size 1GiB]
// Human-readable lines go to stdout (stderr with --json); with --json the last stdout line is one
// JSON object with every figure.
import { parseSize } from '../agent/config/size.js';

type Bench = (opts: { json: boolean; runs: number; size?: number }) => Promise<Record<string, unknown>>;

const BENCHES: Record<string, () => Promise<Bench>> = {
  delivery: async () => (await import('./bench/delivery.js')).benchDelivery,
  serving: async () => (await import('./bench/serving.js')).benchServing,
  controller: async () => (await import('./bench/controller.js')).benchController,
  rollout: async () => (await import('./bench/rollout.js')).benchRollout,
  edge: async () => ((await import(`./bench/${'edge'}.js`)) as { benchEdge: Bench }).benchEdge,
};

const args = process.argv.slice(2);
const flag = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const json = args.includes('--json');
const runs = Number(flag('--runs') ?? 3);
const sizeText = flag('--size');
const size = sizeText === undefined ? undefined : parseSize(sizeText);
const names = args.filter((a, i) => !a.startsWith('--') && !['--runs', '--size'].includes(args[i - 1] ?? ''));
const wanted = names.length === 0 || names.includes('all') ? Object.keys(BENCHES) : names;

if (args.includes('--help') || args.includes('-h')) {
  console.log('usage: npm run bench -- <delivery|serving|controller|rollout|edge|all> [--runs N] [--json] [--size 1GiB]');
  process.exit(0);
}
const unknown = wanted.filter((n) => !BENCHES[n]);
if (unknown.length || !Number.isFinite(runs) || runs < 1 || (sizeText !== undefined && !size)) {
  console.error(`bench: ${unknown.length ? `unknown benchmark ${unknown.join(', ')} (have ${Object.keys(BENCHES).join(', ')})` : 'bad --runs or --size'}`);
  process.exit(2);
}

const results: Record<string, unknown> = {};
for (const name of wanted) {
  const bench = await BENCHES[name]();
  results[name] = await bench({ json, runs, size });
}
if (json) process.stdout.write(`${JSON.stringify(wanted.length === 1 ? results[wanted[0]] : results)}\n`);
process.exit(0);
