// The three patch types a Kubernetes API server accepts (server-side apply is not emulated).

type Json = any;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** RFC 7386 JSON merge patch: objects merge, null deletes, anything else (arrays too) replaces. */
export function mergePatch(target: Json, patch: Json): Json {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/**
 * Strategic merge patch for the fields the controller and kubectl touch: lists with a merge key
 * (containers and env by name, ports by containerPort, ownerReferences by uid, conditions by
 * type) merge item by item; `$patch: delete` in such an item removes it; other lists replace.
 */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  env: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  ports: 'containerPort',
  ownerReferences: 'uid',
  conditions: 'type',
  imagePullSecrets: 'name',
};

export function strategicMergePatch(target: Json, patch: Json, field = ''): Json {
  if (Array.isArray(patch)) {
    const key = MERGE_KEYS[field];
    // Service ports merge by port, container ports by containerPort.
    const mergeKey = field === 'ports' && patch.some((p) => isObject(p) && 'port' in p && !('containerPort' in p)) ? 'port' : key;
    if (!mergeKey || !Array.isArray(target)) return patch.filter((p) => !(isObject(p) && p.$patch === 'delete')).map((p) => structuredClone(p));
    const out = target.map((t) => structuredClone(t));
    for (const item of patch) {
      if (!isObject(item)) continue;
      const idx = out.findIndex((t) => isObject(t) && t[mergeKey] === item[mergeKey]);
      if (item.$patch === 'delete') {
        if (idx >= 0) out.splice(idx, 1);
        continue;
      }
      if (idx >= 0) out[idx] = strategicMergePatch(out[idx], item, '');
      else out.push(structuredClone(item));
    }
    return out;
  }
  if (!isObject(patch)) return structuredClone(patch);
  if (patch.$patch === 'replace') {
    const { $patch: _, ...rest } = patch;
    return structuredClone(rest);
  }
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (k === '$patch' || k.startsWith('$setElementOrder/') || k.startsWith('$retainKeys')) continue;
    if (v === null) delete out[k];
    else out[k] = strategicMergePatch(out[k], v, k);
  }
  return out;
}

/** RFC 6902 JSON patch (add, remove, replace, test, move, copy). */
export function jsonPatch(target: Json, ops: Json): Json {
  if (!Array.isArray(ops)) throw new Error('a JSON patch is an array of operations');
  let doc = structuredClone(target);
  const parse = (p: string) =>
    p === ''
      ? []
      : p
          .split('/')
          .slice(1)
          .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
  const get = (path: string[]) => path.reduce((o: Json, k) => (o == null ? undefined : o[k]), doc);
  const set = (path: string[], value: Json, insert: boolean) => {
    if (!path.length) {
      doc = value;
      return;
    }
    const parent = get(path.slice(0, -1));
    const last = path[path.length - 1];
    if (parent == null || typeof parent !== 'object') throw new Error(`path /${path.join('/')} does not exist`);
    if (Array.isArray(parent)) {
      const i = last === '-' ? parent.length : Number(last);
      if (insert) parent.splice(i, 0, value);
      else parent[i] = value;
    } else parent[last] = value;
  };
  const remove = (path: string[]) => {
    const parent = get(path.slice(0, -1));
    const last = path[path.length - 1];
    if (parent == null || !(last in parent)) throw new Error(`path /${path.join('/')} does not exist`);
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  };
  for (const op of ops) {
    const path = parse(op.path);
    switch (op.op) {
      case 'add':
        set(path, structuredClone(op.value), true);
        break;
      case 'replace':
        if (get(path) === undefined) throw new Error(`path ${op.path} does not exist`);
        set(path, structuredClone(op.value), false);
        break;
      case 'remove':
        remove(path);
        break;
      case 'test':
        if (JSON.stringify(get(path)) !== JSON.stringify(op.value)) throw new Error(`test failed at ${op.path}`);
        break;
      case 'move':
      case 'copy': {
        const from = parse(op.from);
        const v = structuredClone(get(from));
        if (op.op === 'move') remove(from);
        set(path, v, true);
        break;
      }
      default:
        throw new Error(`unknown JSON patch operation ${op.op}`);
    }
  }
  return doc;
}
