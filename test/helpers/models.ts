import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { create as tarCreate } from 'tar';
import { writeBrokenModel, writeLinearModel, type LinearModelOptions } from '../../scripts/models/onnx-writer.js';

export { writeBrokenModel, writeCountModel, writeIdentityModel, writeLinearModel } from '../../scripts/models/onnx-writer.js';

/**
 * Writes a .tar.gz at `archivePath` holding model.onnx (y = x * w + b, or a broken file with
 * `broken: true`) and any `extra` files (name -> content); returns its sha256 (hex) and size.
 */
export async function makeModelArchive(
  archivePath: string,
  opts: (Partial<LinearModelOptions> & { w: number; b: number }) | { broken: true },
  extra: Record<string, string> = {},
): Promise<{ path: string; sha256: string; size: number }> {
  const work = mkdtempSync(join(tmpdir(), 'modeld-archive-'));
  try {
    const file = join(work, 'model.onnx');
    if ('broken' in opts) writeBrokenModel(file);
    else writeLinearModel(file, opts);
    for (const [name, content] of Object.entries(extra)) writeFileSync(join(work, name), content);
    mkdirSync(dirname(archivePath), { recursive: true });
    await tarCreate({ gzip: true, cwd: work, file: archivePath, portable: true }, [basename(file), ...Object.keys(extra)]);
    const bytes = readFileSync(archivePath);
    return { path: archivePath, sha256: createHash('sha256').update(bytes).digest('hex'), size: bytes.length };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A version directory as the installer leaves it: `<dir>/model.onnx`. */
export function makeModelDir(dir: string, opts: (Partial<LinearModelOptions> & { w: number; b: number }) | { broken: true }): string {
  mkdirSync(dir, { recursive: true });
  if ('broken' in opts) writeBrokenModel(join(dir, 'model.onnx'));
  else writeLinearModel(join(dir, 'model.onnx'), opts);
  return dir;
}

// ---- serving test set-up -------------------------------------------------------------------

import { fileURLToPath } from 'node:url';
import { ConfigSchema, type Config, type ConfigInput } from '../../agent/config/schema.js';
import { statePaths, type StatePaths } from '../../agent/paths.js';
import { WAIT_MS, waitForValue } from './wait.js';

/** The small OIP script runtime in test/fixtures, as a command for config.runtimes. */
export const FIXTURE_RUNTIME = fileURLToPath(new URL('../fixtures/oip-runtime.mjs', import.meta.url));

export function fixtureRuntime(mode: string, extra: { env?: Record<string, string>; startTimeoutMs?: number } = {}) {
  return {
    command: [process.execPath, FIXTURE_RUNTIME, '--port', '{port}', '--model-name', '{modelName}', '--version', '{version}', '--model-dir', '{modelDir}', '--mode', mode],
    env: extra.env ?? {},
    readyPath: '/v2/health/ready',
    ...(extra.startTimeoutMs ? { startTimeoutMs: extra.startTimeoutMs } : {}),
  };
}

/** A temp state directory and a config for serving tests (gateway on 127.0.0.1, OS-chosen port). */
export function servingEnv(over: Omit<ConfigInput, 'stateDir'> = {}): { root: string; config: Config; paths: StatePaths; cleanup(): void } {
  const root = mkdtempSync(join(tmpdir(), 'modeld-serving-'));
  const config = ConfigSchema.parse({
    ...over,
    stateDir: root,
    gateway: { bind: '127.0.0.1', port: 0, ...(over.gateway ?? {}) },
    node: { address: '127.0.0.1', ...(over.node ?? {}) },
    serving: { startTimeoutMs: 120_000, drainTimeoutMs: 10_000, stopGraceMs: 3000, restartBackoffMs: 50, crashLoopRestarts: 2, ...(over.serving ?? {}) },
  });
  return { root, config, paths: statePaths(root), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

/**
 * Waits until an instance of `version` of default/<name> has been spawned (its pid file is
 * written right after the spawn) and returns its pid: the event "the runtime is starting".
 */
export function spawnedRuntime(paths: StatePaths, name: string, version: string): Promise<number> {
  const prefix = `default_${name}_${version}_`;
  return waitForValue(() => {
    const file = readdirSync(paths.runDir).find((f) => f.startsWith(prefix) && f.endsWith('.pid'));
    return file ? (JSON.parse(readFileSync(join(paths.runDir, file), 'utf8')) as { pid: number }).pid : undefined;
  }, WAIT_MS, `an instance of ${name} ${version} to be spawned`);
}

/** POST an OIP infer with one FP32 input "x" of shape [n, 1]; returns status and parsed body. */
export async function inferX(baseUrl: string, modelName: string, xs: number[]): Promise<{ status: number; body: any }> {
  const res = await fetch(`${baseUrl}/v2/models/${modelName}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'x', shape: [xs.length, 1], datatype: 'FP32', data: xs }] }),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    /* keep text */
  }
  return { status: res.status, body };
}
