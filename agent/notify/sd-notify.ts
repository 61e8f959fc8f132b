import { spawn } from 'node:child_process';
import { KeyedMutex } from '../../shared/keyed-mutex.js';
import type { Logger } from '../log.js';

// sd_notify(3) for Type=notify units: READY=1, STATUS=, STOPPING=1 and WATCHDOG=1 at half of
// WATCHDOG_USEC; silent when NOTIFY_SOCKET is unset.
//
// Why systemd-notify(1) and not the socket itself: Node has no AF_UNIX SOCK_DGRAM, and the native
// add-ons that add one (unix-dgram) would have to be compiled for every target (armv7 has no
// prebuilt binary) — one more thing to break on a board. systemd-notify ships with systemd itself,
// so it is there wherever NOTIFY_SOCKET is. Since systemd 246 it waits (BARRIER=1) until the
// manager has read the message, so the old race (the sender exits before PID 1 looks up its
// cgroup) is gone; Debian 12 ships 252. We pass --pid=<our pid>: as root the message carries our
// pid in its credentials, as the unprivileged `modeld` user the kernel refuses a foreign pid and
// systemd-notify falls back to its own, which is why the unit sets NotifyAccess=all. The cost is
// one short-lived process per message (READY once, WATCHDOG every WatchdogSec/2).

export interface Notifier {
  /** False when NOTIFY_SOCKET was unset: every call is a no-op. */
  readonly enabled: boolean;
  /** Half of WATCHDOG_USEC in ms, when the manager asked for a watchdog (for this pid). */
  readonly watchdogIntervalMs: number | undefined;
  ready(status?: string): Promise<void>;
  status(text: string): Promise<void>;
  stopping(status?: string): Promise<void>;
  watchdog(): Promise<void>;
  /**
   * Starts WATCHDOG=1 every watchdogIntervalMs (no-op without a watchdog). With `status`, its text
   * rides along as STATUS= whenever it changed since the last one sent (no extra process).
   */
  startWatchdog(status?: () => string): void;
  /** Stops the watchdog timer. */
  close(): void;
}

export interface NotifierOptions {
  /** Read, then removed (like sd_notify's unset_environment) so runtimes do not inherit them. */
  env?: NodeJS.ProcessEnv;
  log: Logger;
  /** The systemd-notify binary (PATH lookup by default). */
  command?: string;
  pid?: number;
  /** A message not delivered within this is abandoned (the child is killed). */
  timeoutMs?: number;
}

const ENV_KEYS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

/** Parses WATCHDOG_USEC/WATCHDOG_PID as sd_watchdog_enabled(3) does: half the interval, in ms. */
export function watchdogInterval(env: NodeJS.ProcessEnv, pid: number): number | undefined {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isFinite(usec) || usec <= 0) return undefined;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return undefined;
  return Math.max(1, Math.floor(usec / 2000));
}

/** STATUS= text on one line (the protocol is newline-separated assignments). */
const oneLine = (s: string) => s.replace(/[\r\n]+/g, ' ').slice(0, 1024);

export function createNotifier(opts: NotifierOptions): Notifier {
  const env = opts.env ?? process.env;
  const pid = opts.pid ?? process.pid;
  const socket = env.NOTIFY_SOCKET || undefined;
  const interval = socket ? watchdogInterval(env, pid) : undefined;
  for (const k of ENV_KEYS) delete env[k];
  const log = opts.log;
  const command = opts.command ?? 'systemd-notify';
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const inOrder = new KeyedMutex();
  let timer: NodeJS.Timeout | undefined;
  let watchdogPending = false;
  let warnedMissing = false;

  const sendNow = (args: string[]) =>
    new Promise<void>((resolve) => {
      const child = spawn(command, [`--pid=${pid}`, ...args], {
        env: { NOTIFY_SOCKET: socket, PATH: env.PATH ?? process.env.PATH ?? '/usr/bin:/bin' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-512)));
      const kill = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(kill);
        if (err.code === 'ENOENT') {
          if (!warnedMissing) log.warn({ command }, 'NOTIFY_SOCKET is set but systemd-notify is not installed: no READY/WATCHDOG will be sent');
          warnedMissing = true;
        } else log.warn({ err: err.message }, 'sd_notify failed');
        resolve();
      });
      child.once('close', (code, signal) => {
        clearTimeout(kill);
        if (code !== 0) log.warn({ code, signal, stderr: stderr.trim(), message: args.join(' ') }, 'sd_notify message not delivered');
        resolve();
      });
    });

  // One message at a time, in order: READY is never overtaken by a WATCHDOG.
  const send = (args: string[]): Promise<void> => {
    if (!socket) return Promise.resolve();
    return inOrder.run('sd_notify', () => sendNow(args));
  };

  const notifier: Notifier = {
    enabled: socket !== undefined,
    watchdogIntervalMs: interval,
    ready: (status) => send(['--ready', ...(status ? [`--status=${oneLine(status)}`] : [])]),
    status: (text) => send([`--status=${oneLine(text)}`]),
    stopping: (status) => send(['STOPPING=1', ...(status ? [`STATUS=${oneLine(status)}`] : [])]),
    watchdog: () => send(['WATCHDOG=1']),
    startWatchdog(status) {
      if (!interval || timer) return;
      let lastStatus: string | undefined;
      timer = setInterval(() => {
        // A stuck systemd-notify must not pile up children; the next tick tries again.
        if (watchdogPending) return;
        watchdogPending = true;
        let text: string | undefined;
        try {
          text = status?.();
        } catch {
          text = undefined;
        }
        const changed = text !== undefined && text !== lastStatus;
        if (changed) lastStatus = text;
        void send(['WATCHDOG=1', ...(changed ? [`STATUS=${oneLine(text!)}`] : [])]).finally(() => (watchdogPending = false));
      }, interval);
      timer.unref();
    },
    close() {
      clearInterval(timer);
      timer = undefined;
    },
  };
  return notifier;
}
