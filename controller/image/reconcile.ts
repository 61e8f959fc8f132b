import type { Logger } from 'pino';
import { InferenceModelSpecSchema } from '../../shared/index.js';
import type { Verdict } from '../desired.js';
import type { KubeRest } from '../kube/rest.js';
import { objectKey, type KubeObject } from '../kube/types.js';
import { deleteObject, ensureObject } from './apply.js';
import { ownedObjects, workloadName } from './resources.js';

// The images job: one work-queue key per image resource (`image:<ns>/<name>`). A failure throws,
// and the queue retries that key alone with its own exponential backoff; a full pass does not
// re-run a key that is backing off for the same spec (a permanent 403 is tried less and less
// often, not on every pass), nor one whose attempt for the same spec is in flight (the queue would
// run it again at once when that attempt fails, skipping the backoff). A changed spec is tried at once.

export class ImageDeployments {
  /** key -> signature (uid + spec) the owned objects were last made from */
  private readonly ensured = new Map<string, string>();
  /** key -> signature of the attempt that last failed */
  private readonly failed = new Map<string, string>();
  /** key -> signature of the attempt in flight: a pass meanwhile must not queue it again */
  private readonly attempting = new Map<string, string>();

  constructor(
    private readonly deps: { rest: KubeRest; log: Logger; edgeLabel: string; onEnsured(key: string): void },
  ) {}

  /** The keys a pass should queue now. `backingOff(key)`: the queue retries it on its own. */
  due(models: KubeObject[], verdicts: Map<string, Verdict>, backingOff: (key: string) => boolean): { keys: string[]; changed: string[] } {
    const keys: string[] = [];
    const changed: string[] = [];
    const live = new Set<string>();
    for (const model of models) {
      const key = objectKey(model);
      if (verdicts.get(key)?.kind !== 'image') continue;
      live.add(key);
      const sig = signature(model);
      if (this.ensured.get(key) === sig || this.attempting.get(key) === sig) continue;
      if (this.failed.has(key) && this.failed.get(key) !== sig) changed.push(key);
      else if (backingOff(key)) continue;
      keys.push(key);
    }
    // A resource that stopped using an image loses its Deployment and Service.
    for (const key of this.ensured.keys()) if (!live.has(key)) keys.push(key);
    return { keys, changed };
  }

  /** Makes the owned objects match the resource (or removes them); throws to be retried. */
  async reconcile(key: string, model: KubeObject | undefined, verdict: Verdict | undefined): Promise<void> {
    if (model && verdict?.kind === 'image') {
      const sig = signature(model);
      if (this.ensured.get(key) === sig) return;
      this.attempting.set(key, sig);
      try {
        const { deployment, service } = ownedObjects(model, InferenceModelSpecSchema.parse(model.spec), this.deps.edgeLabel);
        await ensureObject(this.deps.rest, deployment);
        await ensureObject(this.deps.rest, service);
      } catch (err) {
        this.failed.set(key, sig);
        throw err;
      } finally {
        this.attempting.delete(key);
      }
      this.failed.delete(key);
      this.ensured.set(key, sig);
      this.deps.onEnsured(key);
      return;
    }
    this.failed.delete(key);
    if (!this.ensured.has(key)) return;
    // Deleted resources: the garbage collector removes what they own.
    if (model) {
      const [ns, name] = key.split('/');
      await deleteObject(this.deps.rest, 'Deployment', ns, workloadName(name));
      await deleteObject(this.deps.rest, 'Service', ns, workloadName(name));
    }
    this.ensured.delete(key);
  }

  forget(key: string): void {
    this.ensured.delete(key);
    this.failed.delete(key);
  }
}

const signature = (model: KubeObject) => JSON.stringify([model.metadata.uid, InferenceModelSpecSchema.parse(model.spec)]);
