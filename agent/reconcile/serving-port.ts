import type { ServeTarget } from '../runtime/runtime-plan.js';

export type { ServeTarget };

// What the reconcile engine needs from the serving layer (agent/runtime/serving.ts implements it).
// Kept as an interface so a node can also run delivery-only, with no serving at all.

export interface ServingPort {
  /**
   * Blue/green: the new version takes traffic only once ready; on failure the old keeps serving.
   * `onRouted` is called when the new version takes traffic, before the old one is drained.
   */
  activate(target: ServeTarget, opts?: { signal?: AbortSignal; onRouted?: () => void }): Promise<{ url: string }>;
  deactivate(namespace: string, name: string): Promise<void>;
  /** `backend`: the onnxruntime ("native" or "wasm") of a built-in model served in the runtime host. */
  state(namespace: string, name: string): { version: string; sha256?: string; replicas: number; readyReplicas: number; url: string; backend?: string } | undefined;
}
