// One agent delivery, in its own process so its peak RSS is its own: the runner's own fetch and
// install steps (download, hash, unpack into staging as bytes land, verify, promote), exactly as
// the daemon runs them. Prints one JSON line.
//   node dist/scripts/bench/delivery-agent.js <url> <sha256> <stateDir>
import { parseConfig } from '../../agent/config/load.js';
import { BlobStore } from '../../agent/fetch/blob-store.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { nodeLimitsFromConfig } from '../../agent/reconcile/node-limits.js';
import { Reporter } from '../../agent/reconcile/report.js';
import { runStep, type StepDeps } from '../../agent/reconcile/steps.js';
import { openStore } from '../../agent/store/index.js';

const [url, sha256, stateDir] = process.argv.slice(2);
const config = parseConfig({ stateDir, fetch: { reserveBytes: 0 } });
const paths = statePaths(stateDir);
const store = openStore(paths.db);
const log = silentLogger();
const deps: StepDeps = {
  config,
  paths,
  store,
  log,
  blobStore: new BlobStore({ paths, blobs: store.blobs, log }),
  fetchPolicy: fetchPolicyFromConfig(config),
  reporter: new Reporter({ config, store, log, enqueue: () => {} }),
  limits: nodeLimitsFromConfig(config),
};
const model = { namespace: 'bench', name: 'model', modelName: 'model' };
const ctx = { signal: new AbortController().signal, learnt: new Map<string, string>() };

const t0 = performance.now();
await runStep({ kind: 'fetch', version: '1', url, sha256 }, model, deps, ctx);
const t1 = performance.now();
const fetchRssMB = process.resourceUsage().maxRSS / 1024;
// Installed already when unpacking overlapped the download; otherwise the install step does it.
const overlapped = store.versions.get('bench', 'model', { version: '1', sha256 }) !== undefined;
if (!overlapped) await runStep({ kind: 'install', version: '1', sha256 }, model, deps, ctx);
const t2 = performance.now();
store.close();
process.stdout.write(
  `${JSON.stringify({ totalMs: t2 - t0, fetchMs: t1 - t0, installMs: t2 - t1, overlapped, fetchRssMB, maxRssMB: process.resourceUsage().maxRSS / 1024 })}\n`,
);
