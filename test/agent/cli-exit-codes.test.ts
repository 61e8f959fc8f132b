import { chmodSync, closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync, existsSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acquireStateLock, type StateLock } from '../../agent/admin/state-lock.js';
import { startAgentProcess } from '../helpers/agent-process.js';
import { inferenceModel, offlineNodeConfig, runCli, startCli, writeConfig, writeYaml, type CliResult } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { waitFor } from '../helpers/wait.js';

// Every exit code every subcommand documents in its --help ("Exit codes:"), made to happen as a
// user would make it happen. The documented list comes from the help text itself, so a code
// added to a command's help without a case here, or a case for a code the help does not list,
// fails the test.

let work: string;
let broker: Broker;
const cfg: Record<string, string> = {};
let busy: Server | undefined;
let denied: Server | undefined;
const locks: StateLock[] = [];
const archives: Record<string, { path: string; sha256: string }> = {};

async function node(name: string, extra: Record<string, unknown> = {}) {
  const c = await offlineNodeConfig(join(work, name), extra);
  cfg[name] = writeConfig(c);
  return c;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'modeld-exit-'));
  broker = await startMosquitto();
  // The main node: lin with versions 1 and 2 installed (2 serving), so rollback has a previous version.
  const main = await node('main');
  archives['1'] = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 1, b: 0 });
  archives['2'] = await makeModelArchive(join(work, 'lin-2.tar.gz'), { w: 2, b: 0 });
  for (const v of ['1', '2']) expect((await runCli(cfg.main, ['seed', archives[v].path, '--name', 'lin', '--version', v])).code).toBe(0);
  const spec = (target: string) => writeYaml(join(work, `lin-${target}.yaml`), inferenceModel('lin', [{ version: '1', sha256: archives['1'].sha256 }, { version: '2', sha256: archives['2'].sha256 }], { targetVersion: target }));
  spec('1');
  expect((await runCli(cfg.main, ['apply', '-f', join(work, 'lin-1.yaml')])).code).toBe(0);
  const daemon = startAgentProcess(main, ['--no-serve']);
  try {
    const phase = async () => JSON.parse((await runCli(cfg.main, ['get', 'lin', '-o', 'json'])).stdout || '{}').status;
    await waitFor(async () => (await phase())?.servingVersion === '1', 120_000, 'version 1 installed');
    expect((await runCli(cfg.main, ['apply', '-f', spec('2')])).code).toBe(0);
    await waitFor(async () => (await phase())?.servingVersion === '2', 120_000, 'version 2 installed');
  } finally {
    await daemon.kill('SIGTERM');
  }
  writeYaml(join(work, 'other.yaml'), inferenceModel('other', [{ version: '1', sha256: archives['1'].sha256 }]));
  writeFileSync(join(work, 'bad.yaml'), 'apiVersion: [\n');
  // A node whose state directory another CLI command holds.
  const locked = await node('locked');
  mkdirSync(locked.stateDir, { recursive: true });
  locks.push(acquireStateLock(join(locked.stateDir, 'modeld.lock'), { kind: 'cli', command: 'modeld verify' }));
  // A node whose daemon holds the state directory but does not answer.
  const hung = await node('hung');
  mkdirSync(hung.stateDir, { recursive: true });
  locks.push(acquireStateLock(join(hung.stateDir, 'modeld.lock'), { kind: 'daemon', command: 'modeld run' }));
  // A node with a corrupt archive in its store.
  const corrupt = await node('corrupt');
  expect((await runCli(cfg.corrupt, ['seed', archives['1'].path, '--name', 'lin', '--version', '1'])).code).toBe(0);
  const blob = join(corrupt.stateDir, 'blobs', 'sha256', archives['1'].sha256.slice(0, 2), archives['1'].sha256.slice(2));
  const bytes = readFileSync(blob);
  bytes[bytes.length >> 1] ^= 0xff;
  writeFileSync(blob, bytes);
  // A node doctor finds healthy: a broker, free ports, an existing state directory.
  await node('healthy', { broker: { url: broker.url }, gateway: { bind: '127.0.0.1', port: await freePort() }, admin: { socket: join(work, 'healthy', 'admin.sock'), metricsBind: '127.0.0.1', metricsPort: await freePort() } });
  mkdirSync(join(work, 'healthy', 'state'), { recursive: true });
  // A node whose admin socket this user may not open (mode 000; root without CAP_DAC_OVERRIDE below).
  const deniedNode = await node('denied');
  denied = createServer();
  await new Promise<void>((r) => denied!.listen((deniedNode.admin as { socket: string }).socket, () => r()));
  chmodSync((deniedNode.admin as { socket: string }).socket, 0);
  writeFileSync(join(work, 'bad-config.yaml'), 'stateDri: /tmp\n');
  cfg.badConfig = join(work, 'bad-config.yaml');
  // Runtime hosts: one free to start, one whose endpoint port another socket holds.
  await node('host', { gateway: { bind: '127.0.0.1', port: 0 } });
  busy = createServer();
  await new Promise<void>((r) => busy!.listen(0, '127.0.0.1', () => r()));
  await node('hostBusy', { gateway: { bind: '127.0.0.1', port: (busy.address() as AddressInfo).port } });
}, 300_000);

afterAll(async () => {
  await new Promise((r) => (busy ? busy.close(r) : r(undefined)));
  await new Promise((r) => (denied ? denied.close(r) : r(undefined)));
  for (const l of locks) l.release();
  await broker?.close();
  rmSync(work, { recursive: true, force: true });
});

const run = (config: string, ...args: string[]) => () => runCli(cfg[config], args);
/** As a user the socket's mode shuts out: root is one only without CAP_DAC_OVERRIDE. */
const shutOut = (...args: string[]) => () =>
  runCli(cfg.denied, args, { wrap: process.getuid?.() === 0 ? ['setpriv', '--bounding-set', '-dac_override,-dac_read_search'] : [] });

/** Ctrl-C (SIGINT to the process group, as a terminal sends it) once `started` holds. */
const interrupted = (config: string, args: string[], started: () => boolean) => async (): Promise<CliResult> => {
  const c = startCli(cfg[config], args);
  try {
    await waitFor(started, 60_000, `${args[0]} under way`);
    process.kill(-c.tree.child.pid!, 'SIGINT');
    const { code } = await c.tree.exited;
    return { code, stdout: c.stdout(), stderr: c.stderr() };
  } finally {
    await c.tree.end();
  }
};

function bigArchive(): string {
  const big = join(work, 'big.tar.gz');
  const fd = openSync(big, 'w');
  writeSync(fd, Buffer.from([0x1f, 0x8b]));
  closeSync(fd);
  truncateSync(big, 2 * 1024 ** 3);
  return big;
}
const copying = () => {
  const partial = join(work, 'main', 'state', 'blobs', 'partial');
  return (existsSync(partial) ? readdirSync(partial) : []).some((f) => statSync(join(partial, f)).size > 0);
};

const runStopped = async (): Promise<CliResult> => {
  const c = startCli(cfg.healthy, ['run', '--no-serve']);
  try {
    await waitFor(async () => (await runCli(cfg.healthy, ['status', '-o', 'json'])).stdout.includes('"daemon": true'), 60_000, 'the daemon to answer');
    c.tree.child.kill('SIGTERM');
    const { code } = await c.tree.exited;
    return { code, stdout: c.stdout(), stderr: c.stderr() };
  } finally {
    await c.tree.end();
  }
};

const hostStopped = async (): Promise<CliResult> => {
  const c = startCli(cfg.host, ['host']);
  try {
    await waitFor(() => c.stdout().includes('runtime host started'), 60_000, 'the runtime host to start');
    c.tree.child.kill('SIGTERM');
    const { code } = await c.tree.exited;
    return { code, stdout: c.stdout(), stderr: c.stderr() };
  } finally {
    await c.tree.end();
  }
};

const cases: Record<string, () => Promise<CliResult>> = {
  'run 0': runStopped,
  'host 0': hostStopped,
  'host 1': run('hostBusy', 'host'),
  'host 2': run('main', 'host', '--bogus'),
  'host 78': run('badConfig', 'host'),
  'run 1': run('locked', 'run', '--no-serve'),
  'run 2': run('main', 'run', '--bogus'),
  'run 78': run('badConfig', 'run'),
  'status 0': run('main', 'status'),
  'status 2': run('main', 'status', 'Not_A_Name'),
  'status 4': run('main', 'status', 'nope'),
  'status 77': shutOut('status'),
  'status 78': run('badConfig', 'status'),
  'get 0': run('main', 'get'),
  'get 2': run('main', 'get', '-o', 'xml'),
  'get 4': run('main', 'get', 'nope'),
  'get 77': shutOut('get'),
  'get 78': run('badConfig', 'get'),
  'describe 0': run('main', 'describe', 'lin'),
  'describe 2': run('main', 'describe'),
  'describe 4': run('main', 'describe', 'nope'),
  'describe 77': shutOut('describe', 'lin'),
  'describe 78': run('badConfig', 'describe', 'lin'),
  'apply 0': () => runCli(cfg.main, ['apply', '-f', join(work, 'other.yaml')]),
  'apply 1': () => runCli(cfg.locked, ['apply', '-f', join(work, 'other.yaml')]),
  'apply 2': () => runCli(cfg.main, ['apply', '-f', join(work, 'bad.yaml')]),
  'apply 3': () => runCli(cfg.hung, ['apply', '-f', join(work, 'other.yaml')]),
  'apply 77': () => shutOut('apply', '-f', join(work, 'other.yaml'))(),
  'apply 78': () => runCli(cfg.badConfig, ['apply', '-f', join(work, 'other.yaml')]),
  'diff 0': () => runCli(cfg.main, ['diff', '-f', join(work, 'lin-2.yaml')]),
  'diff 1': () => runCli(cfg.main, ['diff', '-f', join(work, 'lin-1.yaml')]),
  'diff 2': () => runCli(cfg.main, ['diff', '-f', join(work, 'bad.yaml')]),
  'diff 78': () => runCli(cfg.badConfig, ['diff', '-f', join(work, 'lin-1.yaml')]),
  'delete 0': run('main', 'delete', 'other'),
  'delete 1': run('locked', 'delete', 'lin'),
  'delete 2': run('main', 'delete'),
  'delete 3': run('hung', 'delete', 'lin'),
  'delete 4': run('main', 'delete', 'nope'),
  'delete 77': shutOut('delete', 'lin'),
  'delete 78': run('badConfig', 'delete', 'lin'),
  'seed 0': () => runCli(cfg.main, ['seed', archives['1'].path, '--name', 'lin', '--version', '1']),
  'seed 1': () => runCli(cfg.main, ['seed', archives['2'].path, '--name', 'lin', '--version', '1']),
  'seed 2': () => runCli(cfg.main, ['seed', join(work, 'missing.tar.gz'), '--name', 'lin', '--version', '1']),
  'seed 3': () => runCli(cfg.hung, ['seed', archives['1'].path, '--name', 'lin', '--version', '1']),
  'seed 77': () => shutOut('seed', archives['1'].path, '--name', 'lin', '--version', '1')(),
  'seed 78': () => runCli(cfg.badConfig, ['seed', archives['1'].path, '--name', 'lin', '--version', '1']),
  'seed 130': () => interrupted('main', ['seed', bigArchive(), '--name', 'big', '--version', '1'], copying)(),
  'rollback 0': run('main', 'rollback', 'lin'),
  'rollback 1': run('main', 'rollback', 'lin', '--to', '7'),
  'rollback 2': run('main', 'rollback', 'lin', '--to', 'a b'),
  'rollback 3': run('hung', 'rollback', 'lin'),
  'rollback 4': run('main', 'rollback', 'nope'),
  'rollback 77': shutOut('rollback', 'lin'),
  'rollback 78': run('badConfig', 'rollback', 'lin'),
  // Release first, while lin is not deferred; then hold it.
  'defer 1': run('main', 'defer', '--release', 'lin'),
  'defer 0': run('main', 'defer', 'lin', '--for', '1m'),
  'defer 2': run('main', 'defer', 'lin', '--for', 'soon'),
  'defer 3': run('hung', 'defer', 'lin'),
  'defer 4': run('main', 'defer', 'nope'),
  'defer 77': shutOut('defer', 'lin', '--for', '1m'),
  'defer 78': run('badConfig', 'defer', 'lin'),
  'gc 0': run('main', 'gc', '--dry-run'),
  'gc 1': run('locked', 'gc'),
  'gc 2': run('main', 'gc', '--bogus'),
  'gc 3': run('hung', 'gc'),
  'gc 77': shutOut('gc'),
  'gc 78': run('badConfig', 'gc'),
  'verify 0': run('main', 'verify', '--no-repair'),
  'verify 1': run('corrupt', 'verify', '--no-repair'),
  'verify 2': run('main', 'verify', '--bogus'),
  'verify 3': run('hung', 'verify'),
  'verify 77': shutOut('verify'),
  'verify 78': run('badConfig', 'verify'),
  'doctor 0': run('healthy', 'doctor', '--timeout', '10000'),
  'doctor 1': run('main', 'doctor', '--timeout', '500'),
  'doctor 2': run('main', 'doctor', '--timeout', 'soon'),
  'events 0': run('main', 'events', 'lin'),
  'events 2': run('main', 'events', '--limit', '0'),
  'events 4': run('main', 'events', 'nope'),
  'events 77': shutOut('events', 'lin'),
  'events 78': run('badConfig', 'events'),
  'config 0': run('main', 'config', 'view'),
  'config 2': run('main', 'config', 'view', '-o', 'xml'),
  'config 77': shutOut('config', 'view'),
  'config 78': run('badConfig', 'config', 'view'),
  'completion 0': run('main', 'completion', 'bash'),
  'completion 2': run('main', 'completion', 'fish'),
  'version 0': run('main', 'version'),
  'version 2': run('main', 'version', '--bogus'),
};

describe('every documented exit code of every subcommand', () => {
  it('the --help of each command lists exactly the codes walked here', async () => {
    const top = await runCli(cfg.main, ['--help']);
    const commands = [...top.stdout.matchAll(/^ {2}([a-z]+)\b/gm)].map((m) => m[1]).filter((c) => c !== 'help');
    const documented: string[] = [];
    for (const c of commands) {
      const help = await runCli(cfg.main, [c, ...(c === 'config' ? ['view'] : []), '--help']);
      const block = help.stdout.split('\nExit codes:\n')[1];
      expect({ c, hasExitCodes: block !== undefined }).toEqual({ c, hasExitCodes: true });
      for (const m of block.matchAll(/^ {2}(\d+) /gm)) documented.push(`${c} ${m[1]}`);
    }
    expect(documented.sort()).toEqual(Object.keys(cases).sort());
  });

  for (const [key, walk] of Object.entries(cases)) {
    const [, code] = key.split(' ');
    it(`${key}`, async () => {
      const r = await walk();
      expect({ key, code: r.code, stderr: r.stderr.slice(0, 400) }).toMatchObject({ key, code: Number(code) });
      // A failure says why in one line on stderr (doctor, diff and verify report on stdout).
      if (r.code !== 0 && !['doctor 1', 'diff 1', 'verify 1'].includes(key)) expect(r.stderr).toMatch(/^modeld: /);
    }, 120_000);
  }
});
