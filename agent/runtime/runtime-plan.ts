import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { DNS_LABEL, MODEL_NAME_PATTERN, VERSION_PATTERN } from '../../shared/names.js';
import type { Config } from '../config/schema.js';
import { ModeldError } from '../errors.js';

// Which runtime serves a version, and its exact argv. Values from the cloud enter a command line
// only through the four placeholders, and only after passing the strict name patterns again here.

export interface ServeTarget {
  namespace: string;
  name: string;
  modelName: string;
  version: string;
  /** The tree's digest: which bytes of `version` these are (a version republished with other bytes is another tree). */
  sha256?: string;
  /** The installed tree to serve: models/<ns>/<name>/versions/<version>@<sha256>. */
  versionDir: string;
  frameworkType?: string;
  replicas: number;
}

export interface RuntimePlan {
  /** "onnx" for the built-in runtime, else the config key of the command runtime. */
  runtime: string;
  builtin: boolean;
  readyPath: string;
  startTimeoutMs: number;
  env: Record<string, string>;
  /** The argv (no shell) for an instance listening on `port`. */
  argv(port: number): string[];
}

const PLACEHOLDER = /\{(port|modelDir|modelName|version)\}/g;

/** Checks every value that may reach a command line or a path; throws StartFailed naming the bad one. */
export function validateTarget(target: ServeTarget, stateRoot: string): void {
  const refuse = (what: string, value: unknown): never => {
    throw new ModeldError('StartFailed', `refusing to serve: invalid ${what} ${JSON.stringify(value)?.slice(0, 80)}`, { details: { [what]: value } });
  };
  if (typeof target.namespace !== 'string' || !DNS_LABEL.test(target.namespace)) refuse('namespace', target.namespace);
  if (typeof target.name !== 'string' || !DNS_LABEL.test(target.name)) refuse('name', target.name);
  if (typeof target.modelName !== 'string' || !MODEL_NAME_PATTERN.test(target.modelName)) refuse('modelName', target.modelName);
  if (typeof target.version !== 'string' || !VERSION_PATTERN.test(target.version)) refuse('version', target.version);
  if (!Number.isInteger(target.replicas) || target.replicas < 0 || target.replicas > 64) refuse('replicas', target.replicas);
  const dir = target.versionDir;
  if (typeof dir !== 'string' || !isAbsolute(dir) || resolve(dir) !== dir || /[\0\n\r]/.test(dir)) refuse('versionDir', dir);
  if (!isInside(resolve(stateRoot), dir)) refuse('versionDir (outside the state directory)', dir);
  let real: string;
  try {
    real = realpathSync(dir);
    if (!statSync(real).isDirectory()) refuse('versionDir (not a directory)', dir);
  } catch (err) {
    if (err instanceof ModeldError) throw err;
    throw new ModeldError('StartFailed', `version directory ${dir} is missing`, { cause: err });
  }
  // A link inside the state directory must not lead out of it.
  const realRoot = existsSync(stateRoot) ? realpathSync(stateRoot) : resolve(stateRoot);
  if (!isInside(realRoot, real)) refuse('versionDir (leads outside the state directory)', dir);
}

const isInside = (root: string, p: string) => {
  const rel = relative(root, p);
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
};

const hasOnnxFile = (dir: string) => {
  try {
    const top = readdirSync(dir, { withFileTypes: true });
    if (top.some((e) => e.isFile() && e.name.endsWith('.onnx'))) return true;
    return top.some((e) => e.isDirectory() && readdirSync(join(dir, e.name)).some((f) => f.endsWith('.onnx')));
  } catch {
    return false;
  }
};

/** The built-in server's entry and the node arguments to run it, from source (tsx) or from dist. */
export function builtinServerCommand(): string[] {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith('.ts')) {
    const tsx = createRequire(import.meta.url).resolve('tsx');
    return [process.execPath, '--import', pathToFileURL(tsx).href, join(here, '..', 'onnx-server.ts')];
  }
  return [process.execPath, join(here, '..', 'onnx-server.js')];
}

/**
 * Chooses the runtime: a configured entry for the frameworkType (also for "onnx", so an operator
 * can put Triton there), else the built-in for "onnx" or for an empty frameworkType when the
 * version holds a .onnx file; otherwise RuntimeNotFound.
 */
export function planRuntime(target: ServeTarget, config: Config): RuntimePlan {
  validateTarget(target, config.stateDir);
  const ft = (target.frameworkType ?? '').trim();
  const entry = ft ? (config.runtimes[ft] ?? config.runtimes[ft.toLowerCase()]) : undefined;
  const values = { modelDir: target.versionDir, modelName: target.modelName, version: target.version };
  if (entry) {
    const fill = (arg: string, port: number) => arg.replace(PLACEHOLDER, (_, k: keyof typeof values | 'port') => (k === 'port' ? String(port) : values[k]));
    return {
      runtime: ft,
      builtin: false,
      // TF Serving's readiness is per model (/v1/models/{modelName}); the port is not known here.
      readyPath: fill(entry.readyPath, 0),
      startTimeoutMs: entry.startTimeoutMs ?? config.serving.startTimeoutMs,
      env: entry.env,
      argv: (port) => entry.command.map((arg) => fill(arg, port)),
    };
  }
  if (ft.toLowerCase() === 'onnx' || (ft === '' && hasOnnxFile(target.versionDir))) {
    const base = builtinServerCommand();
    return {
      runtime: 'onnx',
      builtin: true,
      readyPath: '/v2/health/ready',
      startTimeoutMs: config.serving.startTimeoutMs,
      env: {},
      argv: (port) => [
        ...base,
        '--port', String(port),
        '--model-dir', values.modelDir,
        '--model-name', values.modelName,
        '--version', values.version,
        '--max-body-bytes', String(config.gateway.maxBodyBytes),
        '--backend', config.serving.onnxBackend,
      ],
    };
  }
  throw new ModeldError(
    'RuntimeNotFound',
    ft
      ? `no runtime for frameworkType "${ft}": configure runtimes.${ft} on this node (built in: onnx)`
      : `no frameworkType and no .onnx file in version ${target.version}: cannot choose a runtime`,
    { details: { frameworkType: ft } },
  );
}
