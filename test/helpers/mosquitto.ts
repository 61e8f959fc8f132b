import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { spawnTree, type ProcessTree } from './process-tree.js';
import { WAIT_MS, waitFor } from './wait.js';

// A real mosquitto broker on a loopback port, started and stopped by its pid. Debian's service
// does not start by itself, and tests must not share one.

export interface Broker {
  port: number;
  url: string;
  /** Stops the broker; `start()` brings it back on the same port, with its saved sessions. */
  stop(): Promise<void>;
  /** The same as stop(): reads better in tests of an outage. */
  pause(): Promise<void>;
  start(): Promise<void>;
  /** Teardown: stops the broker for good and removes its folder (config and saved sessions). */
  close(): Promise<void>;
}

const listening = (port: number) =>
  new Promise<boolean>((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });

export async function startMosquitto(opts: { port?: number; persistence?: boolean } = {}): Promise<Broker> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'mosq-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      // Started as root (CI), mosquitto would switch to its own user and could not write here.
      ...(process.getuid?.() === 0 ? ['user root'] : []),
      `persistence ${opts.persistence ? 'true' : 'false'}`,
      `persistence_location ${dir}/`,
      'max_queued_messages 100000',
      'log_dest none',
      '',
    ].join('\n'),
  );
  let tree: ProcessTree | undefined;
  const broker: Broker = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async start() {
      const t = (tree = spawnTree('mosquitto', ['-c', conf], { stdio: 'ignore' }));
      let gone: string | undefined;
      void t.exited.then(({ code, signal }) => (gone = `mosquitto exited with ${code ?? signal}`));
      await waitFor(async () => gone !== undefined || (await listening(port)), WAIT_MS, `mosquitto to listen on ${port}`);
      if (gone) throw new Error(gone);
    },
    pause: () => broker.stop(),
    async stop() {
      const t = tree;
      tree = undefined;
      if (!t) return;
      await t.stop('SIGTERM'); // lets it save its sessions (persistence)
    },
    async close() {
      await broker.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await broker.start();
  } catch (err) {
    await broker.close();
    throw err;
  }
  return broker;
}
