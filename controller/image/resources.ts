import { createHash } from 'node:crypto';
import { API_GROUP, API_VERSION, KIND, type InferenceModelSpec } from '../../shared/index.js';
import type { KubeObject } from '../kube/types.js';

// Pure: an image InferenceModel -> the Deployment and Service the controller owns for it.
// Owner references make the API server's garbage collector delete both with the resource.

export const SERVING_PORT = 8000;
export const MANAGED_BY = 'modeld-controller';
export const HASH_ANNOTATION = 'ai.kubeedge.io/spec-hash';

/** `im-<name>`: a DNS-1035 label (Service names must start with a letter). */
export const workloadName = (name: string) => `im-${name}`.slice(0, 63).replace(/-+$/, '');

export function serviceUrl(name: string, namespace: string): string {
  return `http://${workloadName(name)}.${namespace}.svc:${SERVING_PORT}`;
}

export function ownedObjects(model: KubeObject, spec: InferenceModelSpec, edgeLabel: string): { deployment: KubeObject; service: KubeObject } {
  const { name, namespace = 'default', uid } = model.metadata;
  const wname = workloadName(name);
  const labels = { 'app.kubernetes.io/name': wname, 'app.kubernetes.io/managed-by': MANAGED_BY, 'ai.kubeedge.io/inferencemodel': name };
  const selector = { 'app.kubernetes.io/name': wname, 'ai.kubeedge.io/inferencemodel': name };
  const ownerReferences = [{ apiVersion: `${API_GROUP}/${API_VERSION}`, kind: KIND, name, uid: uid ?? '', controller: true, blockOwnerDeletion: true }];
  const layerTerm = { key: edgeLabel, operator: spec.deployToLayer === 'edge' ? 'Exists' : 'DoesNotExist' };
  const podSpec: Record<string, unknown> = {
    nodeSelector: spec.nodeSelector ?? {},
    affinity: { nodeAffinity: { requiredDuringSchedulingIgnoredDuringExecution: { nodeSelectorTerms: [{ matchExpressions: [layerTerm] }] } } },
    containers: [
      {
        name: 'model',
        image: spec.image,
        ports: [{ name: 'http', containerPort: SERVING_PORT }],
        env: [
          { name: 'MODEL_NAME', value: spec.modelName },
          ...(spec.frameworkType ? [{ name: 'FRAMEWORK_TYPE', value: spec.frameworkType }] : []),
        ],
      },
    ],
  };
  // KubeEdge edge nodes are commonly tainted so that ordinary Pods stay off them.
  if (spec.deployToLayer === 'edge') podSpec.tolerations = [{ key: edgeLabel, operator: 'Exists', effect: 'NoSchedule' }];
  const deploymentSpec = {
    replicas: spec.replicas ?? 1,
    selector: { matchLabels: selector },
    template: { metadata: { labels }, spec: podSpec },
  };
  const serviceSpec = { selector, ports: [{ name: 'http', port: SERVING_PORT, targetPort: 'http', protocol: 'TCP' }] };
  const hash = (o: unknown) => createHash('sha256').update(JSON.stringify(o)).digest('hex').slice(0, 16);
  return {
    deployment: {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: wname, namespace, labels, ownerReferences, annotations: { [HASH_ANNOTATION]: hash(deploymentSpec) } },
      spec: deploymentSpec,
    },
    service: {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: wname, namespace, labels, ownerReferences, annotations: { [HASH_ANNOTATION]: hash(serviceSpec) } },
      spec: serviceSpec,
    },
  };
}
