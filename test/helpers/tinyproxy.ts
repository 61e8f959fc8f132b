import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { spawnTree } from './process-tree.js';
import { WAIT_MS, waitFor } from './wait.js';

// Debian's tinyproxy as a real forward proxy on loopback: absolute-form requests for http: URLs,
// CONNECT tunnels for https:. Its log names every request it forwarded.

export interface Tinyproxy {
  /** http://127.0.0.1:<port> */
  url: string;
  /**
   * The request lines it logged ("GET http://... HTTP/1.1") that name `origin`: a port freed by
   * another test may still get that test's reconnecting clients, which are none of ours.
   */
  requests(origin: string): string[];
  stop(): Promise<void>;
}

const canConnect = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

export async function startTinyproxy(): Promise<Tinyproxy> {
  const dir = mkdtempSync(join(tmpdir(), 'modeld-tinyproxy-'));
  const port = await freePort();
  const log = join(dir, 'tinyproxy.log');
  writeFileSync(log, '');
  // No ConnectPort line: CONNECT to any port (the test servers are on high loopback ports).
  writeFileSync(
    join(dir, 'tinyproxy.conf'),
    [`Port ${port}`, 'Listen 127.0.0.1', 'Timeout 120', 'MaxClients 50', 'Allow 127.0.0.1', 'LogLevel Connect', `LogFile "${log}"`, ''].join('\n'),
  );
  const tree = spawnTree('tinyproxy', ['-d', '-c', join(dir, 'tinyproxy.conf')], { stdio: 'ignore' });
  let exited = false;
  void tree.exited.then(() => (exited = true));
  await waitFor(async () => exited || (await canConnect(port)), WAIT_MS, 'tinyproxy to listen');
  if (exited) {
    const text = readFileSync(log, 'utf8');
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`tinyproxy exited before listening: ${text}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    requests: (origin) =>
      readFileSync(log, 'utf8')
        .split('\n')
        .filter((l) => /Request \(file descriptor \d+\):/.test(l))
        .map((l) => l.replace(/^.*Request \(file descriptor \d+\): /, ''))
        .filter((l) => l.includes(origin)),
    async stop() {
      await tree.end();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
