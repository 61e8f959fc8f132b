import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { silentLogger } from '../../agent/log.js';
import { createNotifier, watchdogInterval } from '../../agent/notify/sd-notify.js';
import { canListenForNotify, startNotifySocket, type NotifySocket } from '../helpers/notify-socket.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree, type ProcessTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';

const ROOT = resolve(import.meta.dirname, '../..');
let work: string;
let sock: NotifySocket | undefined;
let daemon: ProcessTree | undefined;

beforeEach(() => {
  work = mkdtempSync(join(tmpdir(), 'modeld-notify-'));
});
afterEach(async () => {
  await daemon?.end();
  daemon = undefined;
  await sock?.stop();
  sock = undefined;
  rmSync(work, { recursive: true, force: true });
});

const canConnect = (port: number) =>
  new Promise<boolean>((r) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => (s.destroy(), r(true)));
    s.once('error', () => r(false));
  });

describe('sd_notify', () => {
  it('reads the watchdog interval as sd_watchdog_enabled does (half, only for our pid)', () => {
    expect(watchdogInterval({ WATCHDOG_USEC: '20000000' }, 7)).toBe(10_000);
    expect(watchdogInterval({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '7' }, 7)).toBe(10_000);
    expect(watchdogInterval({ WATCHDOG_USEC: '20000000', WATCHDOG_PID: '8' }, 7)).toBeUndefined();
    expect(watchdogInterval({ WATCHDOG_USEC: 'x' }, 7)).toBeUndefined();
    expect(watchdogInterval({}, 7)).toBeUndefined();
  });

  it('is silent when NOTIFY_SOCKET is unset: no process is spawned', async () => {
    const marker = join(work, 'spawned');
    const fake = join(work, 'fake-notify');
    writeFileSync(fake, `#!/bin/sh\ntouch ${marker}\n`);
    chmodSync(fake, 0o755);
    const n = createNotifier({ env: { WATCHDOG_USEC: '1000' }, log: silentLogger(), command: fake });
    expect(n.enabled).toBe(false);
    expect(n.watchdogIntervalMs).toBeUndefined();
    n.startWatchdog();
    await n.ready('x');
    await n.watchdog();
    await n.stopping();
    n.close();
    expect(existsSync(marker)).toBe(false);
    // The same fake is run when the socket is set (so the check above means something).
    const on = createNotifier({ env: { NOTIFY_SOCKET: join(work, 'nowhere') }, log: silentLogger(), command: fake });
    await on.ready();
    expect(existsSync(marker)).toBe(true);
  });

  it('takes NOTIFY_SOCKET and WATCHDOG_* out of the environment runtimes inherit', () => {
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: '/run/x', WATCHDOG_USEC: '4000000', WATCHDOG_PID: '5', PATH: '/bin' };
    const n = createNotifier({ env, log: silentLogger(), pid: 5 });
    expect(n.enabled).toBe(true);
    expect(n.watchdogIntervalMs).toBe(2000);
    expect(env).toEqual({ PATH: '/bin' });
  });

  it('the real daemon sends READY once the gateway listens, WATCHDOG at half the interval, STOPPING on SIGTERM', async (ctx) => {
    if (!canListenForNotify()) {
      console.warn('skipped: python3 is needed for the AF_UNIX datagram notify socket (apt-get install python3)');
      return ctx.skip();
    }
    sock = await startNotifySocket(join(work, 'notify.sock'));
    const gatewayPort = await freePort();
    const brokerPort = await freePort(); // nothing listens: the agent starts without a broker
    const configFile = join(work, 'config.yaml');
    writeFileSync(
      configFile,
      stringify({
        node: { name: 'edge-notify', address: '127.0.0.1' },
        broker: { url: `mqtt://127.0.0.1:${brokerPort}`, reconnectMs: 60_000 },
        stateDir: join(work, 'state'),
        gateway: { bind: '127.0.0.1', port: gatewayPort },
        admin: { socket: join(work, 'modeld.sock'), metricsPort: 0 },
      }),
    );
    daemon = spawnTree(process.execPath, ['--import', 'tsx', join(ROOT, 'agent/cli/index.ts'), '--config', configFile, 'run'], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, MODELD_CONFIG: '', NOTIFY_SOCKET: sock.path, WATCHDOG_USEC: '1000000' },
    });
    const child = daemon.child;
    const pid = child.pid!;
    const find = (key: string) => sock!.messages.filter((m) => key in m.fields);

    await waitFor(() => find('READY').length > 0 || child.exitCode !== null, WAIT_MS, 'READY=1');
    // The gateway was listening before READY was sent.
    expect(await canConnect(gatewayPort)).toBe(true);
    const ready = find('READY')[0];
    expect(ready.fields.READY).toBe('1');
    expect(ready.fields.MAINPID).toBe(String(pid)); // on behalf of the daemon process itself
    expect(ready.fields.STATUS).toMatch(/edge-notify/);
    // As root the credentials carry the daemon's pid (systemd-notify --pid); otherwise the helper's.
    if (process.getuid?.() === 0) expect(ready.pid).toBe(pid);

    await waitFor(() => find('WATCHDOG').length >= 3, WAIT_MS, 'three WATCHDOG=1 keep-alives');
    const firstWatchdog = sock.messages.findIndex((m) => 'WATCHDOG' in m.fields);
    expect(firstWatchdog).toBeGreaterThan(sock.messages.indexOf(ready)); // never before READY
    expect(find('WATCHDOG').every((m) => m.fields.WATCHDOG === '1' && m.fields.MAINPID === String(pid))).toBe(true);
    // The live status rides on a keep-alive, once per change (no broker listens here).
    const statuses = find('WATCHDOG').filter((m) => m.fields.STATUS !== undefined);
    expect(statuses.map((m) => m.fields.STATUS)).toEqual(['0 models serving, broker unreachable']);

    child.kill('SIGTERM');
    await waitFor(() => find('STOPPING').length > 0, WAIT_MS, 'STOPPING=1');
    expect((await daemon.exited).code).toBe(0);
    expect(find('READY')).toHaveLength(1);
  });
});
