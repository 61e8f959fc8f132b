import { execFileSync } from 'node:child_process';
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

export interface BrokerTls {
  caFile: string;
  certFile: string;
  keyFile: string;
  /** Mutual TLS: a client must present a certificate the CA signed. */
  requireCertificate?: boolean;
}

export interface BrokerOptions {
  port?: number;
  persistence?: boolean;
  /** A TLS listener (mqtts://) instead of a plain one. */
  tls?: BrokerTls;
  /** user -> password; anonymous clients are then refused. */
  users?: Record<string, string>;
}

export async function startMosquitto(opts: BrokerOptions = {}): Promise<Broker> {
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'mosq-'));
  const conf = join(dir, 'mosquitto.conf');
  if (opts.users) {
    // mosquitto_passwd (Debian's mosquitto package) writes the salted hashes mosquitto reads.
    const file = join(dir, 'passwd');
    writeFileSync(file, '');
    for (const [user, password] of Object.entries(opts.users)) execFileSync('mosquitto_passwd', ['-b', file, user, password], { stdio: 'ignore' });
  }
  const tls = opts.tls;
  writeFileSync(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      ...(tls ? [`cafile ${tls.caFile}`, `certfile ${tls.certFile}`, `keyfile ${tls.keyFile}`, `require_certificate ${tls.requireCertificate ? 'true' : 'false'}`] : []),
      ...(opts.users ? ['allow_anonymous false', `password_file ${join(dir, 'passwd')}`] : ['allow_anonymous true']),
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
    url: `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${port}`,
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
