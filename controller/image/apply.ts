import { isStatus, type KubeRest } from '../kube/rest.js';
import type { KubeObject } from '../kube/types.js';
import { HASH_ANNOTATION } from './resources.js';

// Create or update an owned object; an unchanged one (same spec hash) is left alone.

const collection = (o: KubeObject) =>
  o.kind === 'Deployment' ? `/apis/apps/v1/namespaces/${o.metadata.namespace}/deployments` : `/api/v1/namespaces/${o.metadata.namespace}/services`;

export async function ensureObject(rest: KubeRest, want: KubeObject): Promise<KubeObject> {
  const path = `${collection(want)}/${want.metadata.name}`;
  let have: KubeObject | undefined;
  try {
    have = await rest.request<KubeObject>('GET', path);
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
  if (!have) {
    try {
      return await rest.request<KubeObject>('POST', collection(want), { body: want });
    } catch (err) {
      if (!isStatus(err, 409)) throw err;
      have = await rest.request<KubeObject>('GET', path);
    }
  }
  if (have.metadata.annotations?.[HASH_ANNOTATION] === want.metadata.annotations?.[HASH_ANNOTATION]) return have;
  return rest.request<KubeObject>('PATCH', path, {
    body: { metadata: { labels: want.metadata.labels, annotations: want.metadata.annotations, ownerReferences: want.metadata.ownerReferences }, spec: want.spec },
    contentType: 'application/strategic-merge-patch+json',
  });
}

export async function deleteObject(rest: KubeRest, kind: 'Deployment' | 'Service', namespace: string, name: string): Promise<void> {
  const path = `${collection({ kind, metadata: { name, namespace } })}/${name}`;
  try {
    await rest.request('DELETE', path, { body: { kind: 'DeleteOptions', apiVersion: 'v1', propagationPolicy: 'Background' } });
  } catch (err) {
    if (!isStatus(err, 404)) throw err;
  }
}
