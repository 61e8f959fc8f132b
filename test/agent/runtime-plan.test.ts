import { existsSync, mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ModeldError } from '../../agent/errors.js';
import { silentLogger } from '../../agent/log.js';
import { planRuntime, type ServeTarget } from '../../agent/runtime/runtime-plan.js';
import { Serving } from '../../agent/runtime/serving.js';
import { fixtureRuntime, makeModelDir, servingEnv } from '../helpers/models.js';

// Which runtime runs a version, and how nothing from the cloud reaches a command line except
// through the validated placeholders.

const envs: Array<ReturnType<typeof servingEnv>> = [];
afterEach(() => envs.splice(0).forEach((e) => e.cleanup()));

function setup(runtimes = {}) {
  const env = servingEnv({ runtimes });
  envs.push(env);
  const dir = env.paths.treeDir('default', 'm', { version: '1' });
  mkdirSync(dir, { recursive: true });
  const target: ServeTarget = { namespace: 'default', name: 'm', modelName: 'm', version: '1', versionDir: dir, replicas: 1 };
  return { env, dir, target };
}

const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    return (err as ModeldError).code;
  }
  return 'no error';
};

describe('runtime selection', () => {
  it('fills the placeholders of a configured command, one argv element each, no shell', () => {
    const { env, dir, target } = setup({ triton: { command: ['/opt/tritonserver/bin/tritonserver', '--model-repository={modelDir}', '--http-port', '{port}', '--model-control-mode=explicit', '--load-model={modelName}:{version}'] } });
    const plan = planRuntime({ ...target, frameworkType: 'triton' }, env.config);
    expect(plan.builtin).toBe(false);
    expect(plan.readyPath).toBe('/v2/health/ready');
    expect(plan.startTimeoutMs).toBe(env.config.serving.startTimeoutMs);
    expect(plan.argv(9001)).toEqual(['/opt/tritonserver/bin/tritonserver', `--model-repository=${dir}`, '--http-port', '9001', '--model-control-mode=explicit', '--load-model=m:1']);
  });

  it('fills {modelName} and {version} in a readyPath (TF Serving checks readiness per model)', () => {
    const { env, target } = setup({ tfserving: { command: ['tensorflow_model_server', '--rest_api_port={port}', '--model_name={modelName}', '--model_base_path={modelDir}'], readyPath: '/v1/models/{modelName}/versions/{version}' } });
    const plan = planRuntime({ ...target, frameworkType: 'tfserving' }, env.config);
    expect(plan.readyPath).toBe('/v1/models/m/versions/1');
  });

  it('uses the built-in onnx runtime for frameworkType onnx and for an empty frameworkType with a .onnx file', () => {
    const { env, dir, target } = setup();
    expect(planRuntime({ ...target, frameworkType: 'onnx' }, env.config).builtin).toBe(true);
    expect(codeOf(() => planRuntime(target, env.config))).toBe('RuntimeNotFound');
    makeModelDir(dir, { w: 1, b: 0 });
    const plan = planRuntime(target, env.config);
    expect(plan.runtime).toBe('onnx');
    expect(plan.argv(5000)).toEqual(expect.arrayContaining(['--port', '5000', '--model-dir', dir, '--model-name', 'm', '--version', '1']));
  });

  it('passes serving.onnxBackend to the built-in runtime (auto unless configured)', () => {
    const { env, target } = setup();
    expect(planRuntime({ ...target, frameworkType: 'onnx' }, env.config).argv(5000)).toEqual(expect.arrayContaining(['--backend', 'auto']));
    const wasm = { ...env.config, serving: { ...env.config.serving, onnxBackend: 'wasm' as const } };
    expect(planRuntime({ ...target, frameworkType: 'onnx' }, wasm).argv(5000)).toEqual(expect.arrayContaining(['--backend', 'wasm']));
  });

  it('refuses an unknown frameworkType with RuntimeNotFound', () => {
    const { env, target } = setup();
    expect(codeOf(() => planRuntime({ ...target, frameworkType: 'tensorflow' }, env.config))).toBe('RuntimeNotFound');
  });

  it.each([
    ['modelName', '; rm -rf /'],
    ['modelName', '$(touch /tmp/pwned)'],
    ['modelName', '../..'],
    ['modelName', '-rf'],
    ['version', '; rm -rf /'],
    ['version', '$(x)'],
    ['version', '../..'],
    ['version', '`id`'],
    ['version', '1\n2'],
    ['namespace', 'Default'],
    ['name', 'a/b'],
    ['versionDir', 'relative/dir'],
    ['versionDir', '/etc'],
    ['versionDir', '/tmp/../etc'],
  ])('refuses a hostile %s %j before anything is spawned', async (field, value) => {
    const { env, target } = setup({ fix: fixtureRuntime('ok') });
    const hostile = { ...target, frameworkType: 'fix', [field]: value };
    expect(codeOf(() => planRuntime(hostile, env.config))).toBe('StartFailed');
    const serving = new Serving({ config: env.config, paths: env.paths, log: silentLogger() });
    await serving.start();
    try {
      await expect(serving.activate(hostile)).rejects.toMatchObject({ code: 'StartFailed' });
      expect(serving.served()).toEqual([]);
      // No instance spawned (the runtime host's own files are there: start() started it).
      expect(existsSync(env.paths.runDir) ? readdirSync(env.paths.runDir).filter((f) => f.endsWith('.pid')) : []).toEqual([]);
      expect((await serving.host.state()).routes).toEqual([]);
    } finally {
      await serving.close();
      await serving.stopHost();
    }
  });

  it('refuses a version directory that is a link leading out of the state directory', () => {
    const { env, target } = setup();
    const link = env.paths.treeDir('default', 'm', { version: '2' });
    symlinkSync('/etc', link);
    expect(codeOf(() => planRuntime({ ...target, version: '2', versionDir: link, frameworkType: 'onnx' }, env.config))).toBe('StartFailed');
  });
});
