import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { ConfigSchema } from '../../agent/config/schema.js';
import type { ModelContent, StatusContent } from '../../shared/index.js';
import { connectCloud } from '../../test/helpers/cloud.js';
import { makeModelArchive } from '../../test/helpers/models.js';
import { startMosquitto } from '../../test/helpers/mosquitto.js';
import { startNotifySocket } from '../../test/helpers/notify-socket.js';
import { freePort } from '../../test/helpers/ports.js';
import { spawnTree, type ProcessTree } from '../../test/helpers/process-tree.js';
import { waitFor } from '../../test/helpers/wait.js';

// The release booted under qemu-user, as on a board (issue 11):
//
//   npm run smoke -- --arch arm64|armv7 [--json] [--tarball FILE] [--keep]
//
// Builds the release (scripts/build-release.sh), installs it with install.sh --root into a
// scratch root, boots `modeld run` under qemu (qemu-aarch64-static / qemu-arm-static, with a
// Debian sysroot: scripts/smoke/sysroot.sh) against a loopback mosquitto, delivers a real model
// from a loopback HTTP server, infers through the node's gateway, runs `modeld doctor` and
// `modeld status --json`, and ends the daemon with SIGTERM. Prints one JSON line (--json) with
// arch, ready, served, inferOk, readyMs and the rest; exits 1 when a step that the arch can do
// failed. arm64 serves with onnxruntime-node's own arm64 binary; armv7 has none, and serves
// through onnxruntime-web's WASM when the agent has it (config serving.onnxBackend), else the
// smoke checks delivery and READY and says `"backend": "none"`.
//
// Runtimes: the agent spawns them with process.execPath, an ARM node, and this machine has no
// binfmt_misc to run one; scripts/smoke/exec-shim.c (LD_PRELOAD in the ARM node only) sends such
// an exec through qemu. Nothing in the release changes for it.

const ROOT = resolve(import.meta.dirname, '../..');
const NODE_NAME = 'edge-qemu';
const QEMU = { arm64: 'qemu-aarch64-static', armv7: 'qemu-arm-static' } as const;
type Arch = keyof typeof QEMU;

interface SmokeResult {
  arch: Arch;
  node: string;
  tarballBytes: number;
  ready: boolean;
  readyMs: number | null;
  delivered: boolean;
  backend: 'native' | 'wasm' | 'none';
  served: boolean;
  servedMs: number | null;
  inferOk: boolean;
  doctorOk: boolean;
  statusOk: boolean;
  sigtermExit: number | null;
  totalMs: number;
  error?: string;
}

const MODEL = { w: 2, b: 1, x: 10 }; // y = 2x + 1

function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, ...opts.env }, timeout: opts.timeoutMs ?? 900_000, maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '', error: r.error };
}

function must(what: string, r: ReturnType<typeof run>): string {
  if (r.code !== 0) throw new Error(`${what} failed (exit ${r.code ?? r.error?.message}): ${r.stderr.trim().split('\n').slice(-8).join(' | ')}`);
  return r.stdout;
}

/** Whether this agent has a WASM backend for the built-in ONNX runtime (the serving issue's serving.onnxBackend). */
const hasWasmBackend = () => ConfigSchema.safeParse({ serving: { onnxBackend: 'wasm' } }).success;

export async function smoke(opts: { arch: Arch; tarball?: string; keep?: boolean; say: (s: string) => void }): Promise<SmokeResult> {
  const { arch, say } = opts;
  const t0 = performance.now();
  const result: SmokeResult = { arch, node: '', tarballBytes: 0, ready: false, readyMs: null, delivered: false, backend: 'none', served: false, servedMs: null, inferOk: false, doctorOk: false, statusOk: false, sigtermExit: null, totalMs: 0 };
  const work = mkdtempSync(join(tmpdir(), `modeld-smoke-${arch}-`));
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  try {
    const qemu = run('sh', ['-c', `command -v ${QEMU[arch]}`]).stdout.trim();
    if (!qemu) throw new Error(`${QEMU[arch]} is missing: apt-get install qemu-user-static`);

    // 1. The release, and the sysroot qemu runs it in (both cached between runs).
    let tarball = opts.tarball;
    if (!tarball) {
      say(`smoke ${arch}: building the release`);
      tarball = must('build-release', run(join(ROOT, 'scripts/build-release.sh'), ['--arch', arch, '--out', join(work, 'out')])).trim().split('\n').at(-1)!.split(' ')[0];
    }
    result.tarballBytes = statSync(tarball).size;
    say(`smoke ${arch}: sysroot`);
    const sysroot = must('sysroot', run(join(ROOT, 'scripts/smoke/sysroot.sh'), [arch])).trim().split('\n').at(-1)!;

    // 2. install.sh --root into a scratch root. --force: this machine is x64. The node: the
    //    bundled one (arm64), or the sysroot's Debian nodejs (armv7), run through qemu by a wrapper
    //    that install.sh checks (version, ABI) like a board's own node.
    const root = join(work, 'root');
    mkdirSync(root);
    const wrapper = join(work, 'node-under-qemu');
    const armNode = arch === 'arm64' ? join(root, 'opt/modeld/node/bin/node') : join(sysroot, 'usr/bin/node');
    writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        `# ${arch} node under qemu-user, runtimes it spawns too (scripts/smoke/exec-shim.c)`,
        `export QEMU_LD_PREFIX='${sysroot}' SMOKE_QEMU='${qemu}' LD_PRELOAD='${join(sysroot, 'smoke/exec-shim.so')}'`,
        `exec '${qemu}' '${armNode}' "$@"`,
        '',
      ].join('\n'),
    );
    chmodSync(wrapper, 0o755);
    const installArgs = ['--root', root, '--force', ...(arch === 'armv7' ? ['--node', wrapper] : []), tarball];
    const installed = run(join(ROOT, 'scripts/install.sh'), installArgs);
    must('install.sh', installed);
    const modeld = join(root, 'opt/modeld/bin/modeld');
    // arm64's launcher runs the bundled node; here it goes through the wrapper (MODELD_NODE).
    const launchEnv: NodeJS.ProcessEnv = { MODELD_CONFIG: '', ...(arch === 'arm64' ? { MODELD_NODE: wrapper } : {}) };
    result.node = must('node --version', run(wrapper, ['-p', 'process.versions.node'], { timeoutMs: 120_000 })).trim();
    say(`smoke ${arch}: installed; node ${result.node} under ${QEMU[arch]}`);

    // 3. Peers on loopback: mosquitto, the cloud's side of the wire, a model on an HTTP server.
    const broker = await startMosquitto();
    cleanups.push(() => broker.close());
    const cloud = await connectCloud(broker.url);
    cleanups.push(() => cloud.close());
    const archive = await makeModelArchive(join(work, 'linear-1.tar.gz'), { w: MODEL.w, b: MODEL.b });
    const body = readFileSync(archive.path);
    const http = createServer((req, res) => (req.url === '/linear-1.tar.gz' ? res.writeHead(200, { 'content-length': body.length }).end(body) : res.writeHead(404).end()));
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise((r) => http.close(r)));
    const modelUrl = `http://127.0.0.1:${(http.address() as { port: number }).port}/linear-1.tar.gz`;

    const gatewayPort = await freePort();
    const stateDir = join(root, 'var/lib/modeld');
    const config = join(root, 'etc/modeld/config.yaml');
    const wasm = arch === 'armv7' && hasWasmBackend();
    writeFileSync(
      config,
      stringify({
        node: { name: NODE_NAME, address: '127.0.0.1' },
        broker: { url: broker.url, reconnectMs: 500 },
        stateDir,
        gateway: { bind: '127.0.0.1', port: gatewayPort },
        admin: { socket: join(root, 'run/modeld/modeld.sock'), metricsPort: 0 },
        // qemu is 10-50x slower than the board: generous, bounded.
        serving: { startTimeoutMs: 300_000, ...(wasm ? { onnxBackend: 'wasm' } : {}) },
      }),
    );
    mkdirSync(join(root, 'run/modeld'), { recursive: true });

    // 4. Boot: launch -> READY=1 on a notify socket, as systemd would see it.
    const sock = await startNotifySocket(join(work, 'notify.sock'));
    cleanups.push(() => sock.stop());
    say(`smoke ${arch}: booting the daemon under qemu`);
    const tBoot = performance.now();
    const daemon: ProcessTree = spawnTree(modeld, ['--config', config, 'run'], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...launchEnv, NOTIFY_SOCKET: sock.path } });
    cleanups.push(() => daemon.end());
    let stderr = '';
    daemon.child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-8000)));
    const alive = () => daemon.child.exitCode === null && daemon.child.signalCode === null;
    const dead = () => new Error(`the daemon exited (${daemon.child.exitCode ?? daemon.child.signalCode}): ${stderr.trim().split('\n').slice(-5).join(' | ')}`);
    await waitFor(() => sock.messages.some((m) => m.fields.READY === '1') || !alive(), 180_000, 'READY=1 under qemu');
    if (!alive()) throw dead();
    result.ready = true;
    result.readyMs = Math.round(performance.now() - tBoot);
    say(`smoke ${arch}: READY in ${result.readyMs} ms`);

    // 5. Delivery, then serving (native onnxruntime on arm64; WASM or nothing on armv7).
    await waitFor(() => cloud.hellos.includes(NODE_NAME) || !alive(), 120_000, 'hello from the node');
    if (!alive()) throw dead();
    const content: ModelContent = {
      metadata: { name: 'linear', namespace: 'default', uid: 'smoke-1', generation: 1 },
      spec: { modelName: 'linear', deployToLayer: 'edge', frameworkType: 'onnx', manifest: [{ version: '1', downloadURL: modelUrl, sha256sum: archive.sha256 }], targetVersion: '1' },
    };
    const tDeliver = performance.now();
    await cloud.update(NODE_NAME, content);
    const settled = (s: StatusContent) => s.phase === 'Serving' || s.phase === 'Failed';
    const last = await cloud.waitStatus(settled, { timeoutMs: 420_000, what: 'Serving or Failed' });
    const versionDir = join(stateDir, 'models/default/linear/versions', `1@${archive.sha256}`);
    result.delivered = cloud.statuses.some((s) => ['Installed', 'Starting', 'Serving'].includes(s.phase) || s.versions?.some((v) => v.version === '1' && v.state === 'installed')) && existsSync(join(versionDir, 'model.onnx'));
    result.backend = arch === 'arm64' ? 'native' : wasm ? 'wasm' : 'none';
    if (last.phase === 'Serving') {
      result.served = true;
      result.servedMs = Math.round(performance.now() - tDeliver);
      const res = await fetch(`http://127.0.0.1:${gatewayPort}/v2/models/linear/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: [{ name: 'x', shape: [1, 1], datatype: 'FP32', data: [MODEL.x] }] }),
      });
      const out = (await res.json().catch(() => ({}))) as { outputs?: Array<{ data: number[] }> };
      result.inferOk = res.status === 200 && out.outputs?.[0]?.data?.[0] === MODEL.w * MODEL.x + MODEL.b;
      say(`smoke ${arch}: served in ${result.servedMs} ms; infer ${result.inferOk ? 'ok' : `not ok (${res.status} ${JSON.stringify(out).slice(0, 200)})`}`);
    } else {
      say(`smoke ${arch}: delivered=${result.delivered}, not served: ${last.reason ?? ''} ${last.message ?? ''}`.trim());
    }

    // 6. The admin CLI under qemu, beside the running daemon.
    const doctor = run(modeld, ['--config', config, 'doctor', '--json'], { env: launchEnv, timeoutMs: 180_000 });
    try {
      const checks = (JSON.parse(doctor.stdout) as { checks: Array<{ name: string; status: string; message?: string }> }).checks;
      const failed = checks.filter((c) => c.status === 'fail');
      // On armv7 without a WASM backend the built-in runtime's check fails by design.
      const expectedFail = (c: { name: string }) => result.backend === 'none' && c.name.startsWith('runtime:onnx');
      result.doctorOk = checks.length > 0 && failed.every(expectedFail);
      say(`smoke ${arch}: doctor: ${checks.map((c) => `${c.name}=${c.status}`).join(', ')}`);
    } catch {
      say(`smoke ${arch}: doctor printed no JSON (exit ${doctor.code}): ${doctor.stderr.trim().slice(-300)}`);
    }
    const status = run(modeld, ['--config', config, 'status', '--json'], { env: launchEnv, timeoutMs: 180_000 });
    try {
      const text = status.stdout;
      JSON.parse(text);
      result.statusOk = status.code === 0 && text.includes('"linear"');
    } catch {
      say(`smoke ${arch}: status printed no JSON (exit ${status.code}): ${status.stderr.trim().slice(-300)}`);
    }

    // 7. SIGTERM: a clean stop, exit 0 (qemu hands the signal to the guest and its exit code back).
    daemon.child.kill('SIGTERM');
    const exit = await Promise.race([daemon.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 120_000).unref())]);
    result.sigtermExit = exit ? exit.code : null;
    if (stderr.trim()) say(`smoke ${arch}: daemon stderr: ${stderr.trim().slice(-600)}`);
  } catch (err) {
    result.error = (err as Error).message;
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
    if (opts.keep) say(`smoke ${arch}: kept ${work}`);
    else rmSync(work, { recursive: true, force: true });
    result.totalMs = Math.round(performance.now() - t0);
  }
  return result;
}

/** What must hold for the arch: everything, except serving on armv7 without a WASM backend. */
export function smokePassed(r: SmokeResult): boolean {
  const serving = r.backend === 'none' ? r.delivered : r.served && r.inferOk;
  return !r.error && r.ready && serving && r.doctorOk && r.statusOk && r.sigtermExit === 0;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { arch: { type: 'string' }, json: { type: 'boolean' }, tarball: { type: 'string' }, keep: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  if (values.help || !values.arch || !(values.arch in QEMU)) {
    process.stderr.write('usage: npm run smoke -- --arch arm64|armv7 [--json] [--tarball FILE] [--keep]\n');
    process.exit(values.help ? 0 : 2);
  }
  const say = (s: string) => (values.json ? process.stderr : process.stdout).write(`${s}\n`);
  const r = await smoke({ arch: values.arch as Arch, tarball: values.tarball, keep: values.keep, say });
  if (values.json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else say(`smoke ${r.arch}: ${smokePassed(r) ? 'passed' : 'FAILED'} ${JSON.stringify(r)}`);
  process.exit(smokePassed(r) ? 0 : 1);
}
