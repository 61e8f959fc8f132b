import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';

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
  /** The running broker's pid (to freeze it at an exact instant with SIGSTOP, say). */
  pid(): number | undefined;
}

// Each broker's config and saved sessions go when the test process ends.
const brokerDirs = new Set<string>();
process.once('exit', () => {
  for (const d of brokerDirs) rmSync(d, { recursive: true, force: true });
});

async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`mosquitto did not listen on ${port} within ${timeoutMs} ms`);
}

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
  let child: ChildProcess | undefined;
  brokerDirs.add(dir);
  const broker: Broker = {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    async start() {
      child = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
      const exited = new Promise<never>((_, reject) => child!.once('exit', (code) => reject(new Error(`mosquitto exited with ${code}`))));
      exited.catch(() => {});
      await Promise.race([waitForPort(port, 10_000), exited]);
    },
    pause: () => broker.stop(),
    pid: () => (child && child.exitCode === null ? child.pid : undefined),
    async stop() {
      const c = child;
      child = undefined;
      if (!c || c.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGTERM');
        setTimeout(() => c.kill('SIGKILL'), 3000).unref();
      });
    },
  };
  await broker.start();
  return broker;
}
