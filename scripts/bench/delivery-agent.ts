// One agent delivery, in its own process so its peak RSS is its own: fetch (stream, hash,
// verify) + detect + unpack + promote, exactly the steps the runner takes. Prints one JSON line.
//   tsx scripts/bench/delivery-agent.ts <url> <sha256> <stateDir>
import { join } from 'node:path';
import { parseConfig } from '../../agent/config/load.js';
import { BlobStore } from '../../agent/fetch/blob-store.js';
import { fetchBlob } from '../../agent/fetch/download.js';
import { fetchPolicyFromConfig } from '../../agent/fetch/policy.js';
import { detectArchive } from '../../agent/install/detect.js';
import { promoteVersion } from '../../agent/install/layout.js';
import { unpackArchive } from '../../agent/install/unpack.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { openStore } from '../../agent/store/index.js';

const [url, sha256, stateDir] = process.argv.slice(2);
const config = parseConfig({ stateDir, fetch: { reserveBytes: 0 } });
const paths = statePaths(stateDir);
const store = openStore(paths.db);
const log = silentLogger();
const blobStore = new BlobStore({ paths, blobs: store.blobs, log });

const t0 = performance.now();
const got = await fetchBlob({ url, sha256 }, { paths, blobStore, downloads: store.downloads, policy: fetchPolicyFromConfig(config), log });
const t1 = performance.now();
const fetchRssMB = process.resourceUsage().maxRSS / 1024;
await detectArchive(got.path);
const staging = join(paths.stagingDir, 'bench');
await unpackArchive(got.path, staging, { maxBytes: config.limits.unpackedBytes, maxEntries: config.limits.entries });
await promoteVersion(staging, paths.versionDir('bench', 'model', '1'), { sha256 });
const t2 = performance.now();
store.close();
process.stdout.write(
  `${JSON.stringify({ totalMs: t2 - t1 + (t1 - t0), fetchMs: t1 - t0, installMs: t2 - t1, fetchedBytes: got.fetchedBytes, fetchRssMB, maxRssMB: process.resourceUsage().maxRSS / 1024 })}\n`,
);
