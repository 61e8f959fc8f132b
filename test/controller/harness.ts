import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { afterEach, beforeEach } from 'vitest';
import { silentLogger } from '../../agent/log.js';
import { Controller, type ControllerOptions } from '../../controller/controller.js';
import { buildCrd } from '../../controller/crd.js';
import { kubeRest } from '../../controller/kube/rest.js';
import { createMetrics } from '../../controller/metrics.js';
import { DEFAULT_EDGE_LABEL } from '../../controller/placement.js';
import { mqttTransport } from '../../controller/transport/mqtt.js';
import type { Transport } from '../../controller/transport/types.js';
import { DEFAULT_STATUS_TOPIC, DEFAULT_TOPIC_PREFIX } from '../../shared/index.js';
import { FakeKubeApi, TYPES, startFakeKubeApi } from '../fakes/kube-api/server.js';
import { startMosquitto, type Broker } from '../helpers/mosquitto.js';
import { WAIT_MS, waitForValue } from '../helpers/wait.js';

// Shared set-up for controller tests: a fake API server with the CRD installed, and a
// controller built in-process against it.

export const SHA = 'ab'.repeat(32);

export async function startApi(): Promise<FakeKubeApi> {
  const api = await startFakeKubeApi({ bookmarkIntervalMs: 200 });
  api.create(TYPES.crds, buildCrd());
  return api;
}

/**
 * Per test: a fresh fake API server and a real mosquitto, handed to `use`; the cleanups returned
 * run in reverse once the test ends (the broker and API server last). Call at a file's top level.
 */
export function perTestApiAndBroker(use: (api: FakeKubeApi, broker: Broker) => void): Array<() => Promise<unknown> | unknown> {
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  beforeEach(async () => {
    const api = await startApi();
    cleanups.push(() => api.stop());
    const broker = await startMosquitto();
    cleanups.push(() => broker.close());
    use(api, broker);
  });
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });
  return cleanups;
}

export function kubeConfigFor(api: FakeKubeApi): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'fake', server: api.url, skipTLSVerify: true }],
    users: [{ name: 'fake' }],
    contexts: [{ name: 'fake', cluster: 'fake', user: 'fake' }],
    currentContext: 'fake',
  });
  return kc;
}

export function tempDir(prefix = 'modeld-ctl-'): { path: string; cleanup(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export function controllerOptions(over: Partial<ControllerOptions> = {}): ControllerOptions {
  return {
    topicPrefix: DEFAULT_TOPIC_PREFIX,
    statusTopic: DEFAULT_STATUS_TOPIC,
    edgeLabel: DEFAULT_EDGE_LABEL,
    requireDigest: false,
    syncIntervalMs: 60_000,
    statusIntervalMs: 100,
    retryMaxMs: 1000,
    ...over,
  };
}

let instance = 0;
export async function startController(api: FakeKubeApi, opts: { brokerUrl?: string; transport?: Transport; options?: Partial<ControllerOptions> } = {}) {
  const kc = kubeConfigFor(api);
  const log = silentLogger();
  const transport =
    opts.transport ??
    mqttTransport({ brokerUrl: opts.brokerUrl!, clientId: `ctl-test-${process.pid}-${++instance}`, topicPrefix: DEFAULT_TOPIC_PREFIX, statusTopic: DEFAULT_STATUS_TOPIC, log });
  const metrics = createMetrics();
  const controller = new Controller(controllerOptions(opts.options), { kc, rest: kubeRest(kc), transport, log, metrics });
  await controller.start();
  return { controller, metrics };
}

export function node(name: string, labels: Record<string, string> = {}, edge = true) {
  return { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: { 'kubernetes.io/hostname': name, ...(edge ? { [DEFAULT_EDGE_LABEL]: '' } : {}), ...labels } } };
}

export function model(name: string, spec: Record<string, unknown> = {}, namespace = 'default') {
  return {
    apiVersion: 'ai.kubeedge.io/v1alpha1',
    kind: 'InferenceModel',
    metadata: { name, namespace },
    spec: {
      modelName: name,
      deployToLayer: 'edge',
      frameworkType: 'onnx',
      manifest: [
        { version: '1', downloadURL: `http://127.0.0.1:1/${name}/1.tgz`, sha256sum: SHA },
        { version: '2', downloadURL: `http://127.0.0.1:1/${name}/2.tgz`, sha256sum: SHA },
      ],
      targetVersion: '1',
      ...spec,
    },
  };
}

/** Polls until fn returns a truthy value (a throw is "not yet"); the shared wait, in this file's argument order. */
export const until = <T>(fn: () => T | Promise<T>, what: string, timeoutMs = WAIT_MS): Promise<NonNullable<T>> => waitForValue(fn, timeoutMs, what);

export { TYPES };
