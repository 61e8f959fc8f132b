// Child process for the kill -9 test: fetches one blob into a state dir and never returns
// (the server stalls), so the parent can kill it mid-download.
import { BlobStore } from '../../agent/fetch/blob-store.js';
import { fetchBlob } from '../../agent/fetch/download.js';
import { silentLogger } from '../../agent/log.js';
import { statePaths } from '../../agent/paths.js';
import { openStore } from '../../agent/store/index.js';
import { testPolicy } from './fetch-fixture.js';

const [root, url, sha256] = process.argv.slice(2);
const paths = statePaths(root);
const store = openStore(paths.db);
const log = silentLogger();
const blobStore = new BlobStore({ paths, blobs: store.blobs, log });
fetchBlob({ url, sha256 }, { paths, blobStore, downloads: store.downloads, policy: testPolicy({ stallTimeoutMs: 600_000 }), log }).then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
