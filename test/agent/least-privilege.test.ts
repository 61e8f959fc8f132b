import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { offlineNodeConfig, runCli, writeConfig } from '../helpers/modeld-cli.js';
import { makeModelArchive } from '../helpers/models.js';
import { waitFor } from '../helpers/wait.js';

// Least privilege on the node, with real users (CI runs as root): a throwaway service user owns
// the state directory as systemd's modeld user does, an operator is in the socket's group, an
// outsider is not. Root's CLI works as the service user; the admin socket is the group's; a
// permission error says whose permission is missing.

const isRoot = process.getuid?.() === 0;
const tag = Math.random().toString(36).slice(2, 7);
const SVC = `mdsvc${tag}`;
const OP = `mdop${tag}`;
const OUT = `mdout${tag}`;

let work: string;
let configFile: string;
let config: Awaited<ReturnType<typeof offlineNodeConfig>>;
let socket: string;
let svcUid: number;
let svcGid: number;
let daemon: AgentProcess | undefined;

const idOf = (flag: '-u' | '-g', user: string) => Number(execFileSync('id', [flag, user]).toString().trim());
/** Runs a child as `user` (setpriv: its groups too), with a temp dir of its own (tsx's cache). */
function as(user: string): { wrap: string[]; env: Record<string, string> } {
  const tmp = join(work, `tmp-${user}`);
  mkdirSync(tmp, { recursive: true, mode: 0o700 });
  chownSync(tmp, idOf('-u', user), idOf('-g', user));
  return { wrap: ['setpriv', '--reuid', user, '--regid', execFileSync('id', ['-gn', user]).toString().trim(), '--init-groups'], env: { TMPDIR: tmp } };
}
let runTmpMode: number;

/** Every file and directory under `dir`, with its owner. */
function tree(dir: string): Array<{ path: string; uid: number }> {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return [{ path: p, uid: lstatSync(p).uid }, ...(e.isDirectory() ? tree(p) : [])];
  });
}
const notOwnedBy = (dir: string, uid: number) => tree(dir).filter((f) => f.uid !== uid).map((f) => f.path);

describe.skipIf(!isRoot)('least privilege on the node', () => {
  beforeAll(async () => {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', SVC]);
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', '-G', SVC, OP]);
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', OUT]);
    svcUid = idOf('-u', SVC);
    svcGid = idOf('-g', SVC);
    // The run's temp dir is root's 0700: the other users need to pass through it (not list it).
    runTmpMode = statSync(tmpdir()).mode & 0o7777;
    chmodSync(tmpdir(), runTmpMode | 0o011);
    work = mkdtempSync(join(tmpdir(), 'modeld-priv-'));
    chmodSync(work, 0o755);
    // The node's directory as systemd's StateDirectory= makes it: the service user's, 0750.
    const nodeDir = join(work, 'node');
    mkdirSync(nodeDir, { mode: 0o755 });
    chownSync(nodeDir, svcUid, svcGid);
    socket = join(nodeDir, 'run', 'admin.sock');
    config = await offlineNodeConfig(nodeDir, { admin: { socket, socketGroup: SVC } });
    mkdirSync(config.stateDir, { mode: 0o750 });
    chownSync(config.stateDir, svcUid, svcGid);
    configFile = writeConfig(config, join(work, 'config.yaml'));
    chmodSync(configFile, 0o644);
  }, 60_000);

  afterAll(async () => {
    await daemon?.end();
    for (const u of [OP, OUT, SVC]) {
      try {
        execFileSync('userdel', [u], { stdio: 'ignore' });
      } catch {
        /* not created */
      }
    }
    rmSync(work, { recursive: true, force: true });
    if (runTmpMode !== undefined) chmodSync(tmpdir(), runTmpMode);
  });

  it("a root `modeld seed` with no daemon leaves only the service user's files: its `gc --all` then succeeds", async () => {
    const archive = await makeModelArchive(join(work, 'lin-1.tar.gz'), { w: 1, b: 0 });
    chmodSync(archive.path, 0o644);
    const seeded = await runCli(configFile, ['seed', archive.path, '--name', 'lin', '--version', '1']);
    expect(seeded.code, seeded.stderr).toBe(0);
    expect(notOwnedBy(config.stateDir, svcUid)).toEqual([]);
    const gc = await runCli(configFile, ['gc', '--all'], as(SVC));
    expect(gc.code, gc.stderr).toBe(0);
    expect(gc.stdout).toContain(`removed archive sha256:${archive.sha256}`);
  }, 120_000);

  it('root that cannot switch to the service user refuses, saying how to run it, and changes nothing', async () => {
    const before = tree(config.stateDir).map((f) => f.path);
    const r = await runCli(configFile, ['gc', '--all'], { wrap: ['setpriv', '--bounding-set', '-setuid,-setgid'] });
    expect(r.code).toBe(77);
    expect(r.stderr).toContain(`belongs to ${SVC}`);
    expect(r.stderr).toContain(`sudo -u ${SVC} modeld`);
    expect(notOwnedBy(config.stateDir, svcUid)).toEqual([]);
    expect(tree(config.stateDir).map((f) => f.path)).toEqual(before);
  }, 60_000);

  it("root's `modeld doctor` checks as the service user: the edgecore.yaml it cannot read, the state directory it can write", async () => {
    const edgecore = join(work, 'edgecore.yaml');
    writeFileSync(edgecore, 'modules:\n  edged:\n    hostnameOverride: edge-from-edgecore\n');
    chmodSync(edgecore, 0o600); // root's only, as a careless install leaves it
    const r = await runCli(configFile, ['doctor', '-o', 'json', '--timeout', '500'], { env: { MODELD_EDGECORE: edgecore } });
    const checks = Object.fromEntries((JSON.parse(r.stdout).checks as Array<{ name: string; status: string; message: string }>).map((c) => [c.name, c]));
    expect(checks.user).toMatchObject({ status: 'ok' });
    expect(checks.user.message).toContain(`as ${SVC}`);
    expect(checks.edgecore.status).toBe('warn');
    expect(checks.edgecore.message).toContain(`${SVC} cannot read ${edgecore}`);
    expect(checks.edgecore.message).toContain('mqtt://127.0.0.1:1883');
    expect(checks['state-dir']).toMatchObject({ status: 'ok', message: `${config.stateDir} is writable by ${SVC}` });

    // A file root left there (an older release's root CLI): writable is not enough, doctor names it.
    const stray = join(config.stateDir, 'blobs', 'stray');
    writeFileSync(stray, 'x');
    try {
      const again = await runCli(configFile, ['doctor', '-o', 'json', '--timeout', '500']);
      const stateDir = (JSON.parse(again.stdout).checks as Array<{ name: string; status: string; message: string }>).find((c) => c.name === 'state-dir');
      expect(stateDir?.status).toBe('fail');
      expect(stateDir?.message).toContain(`${stray}: root`);
      expect(stateDir?.message).toContain(`chown -R ${SVC}: ${config.stateDir}`);
    } finally {
      rmSync(stray);
    }
  }, 60_000);

  it('a daemon that cannot read edgecore.yaml says so at warning level, with what it falls back to', async () => {
    const edgecore = join(work, 'edgecore.yaml');
    const agent = startAgentProcess({ ...config, admin: { socket: join(work, 'node', 'run-edgecore', 'admin.sock') } }, ['--no-serve'], { ...as(SVC), env: { ...as(SVC).env, MODELD_EDGECORE: edgecore } });
    try {
      await waitFor(() => agent.logs.some((l) => l.msg === 'modeld started'), 60_000, 'the daemon to start');
      const line = agent.logs.find((l) => typeof l.msg === 'string' && l.msg.includes('edgecore'));
      expect(line).toMatchObject({ level: 'warn', edgecore, error: 'EACCES' });
      expect(line!.msg).toContain('hostname');
      expect(line!.msg).toContain('mqtt://127.0.0.1:1883');
    } finally {
      await agent.end();
    }
  }, 120_000);

  it("the admin socket is the group's (0660): a member needs no sudo for status; an outsider is told whose permission is missing", async () => {
    daemon = startAgentProcess(config, ['--no-serve'], as(SVC));
    await waitFor(() => daemon!.logs.some((l) => l.msg === 'modeld started'), 60_000, 'the daemon to start');
    const st = statSync(socket);
    expect(st.mode & 0o777).toBe(0o660);
    expect(st.gid).toBe(svcGid);

    const member = await runCli(configFile, ['status', '-o', 'json'], as(OP));
    expect(member.code, member.stderr).toBe(0);
    expect(JSON.parse(member.stdout).daemon).toBe(true);

    for (const args of [['status'], ['rollback', 'lin']]) {
      const r = await runCli(configFile, args, as(OUT));
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(77);
      expect(r.stderr).toContain(`permission denied on ${socket}`);
      expect(r.stderr).toContain(`run as a member of group ${SVC}, or with sudo`);
      expect(r.stderr).not.toContain('DaemonNotRunning');
    }
    await daemon.kill('SIGTERM');
  }, 120_000);
});
