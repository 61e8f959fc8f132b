import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { cellOf } from './jsonpath.js';
import { jsonPatch, mergePatch, strategicMergePatch } from './patch.js';
import { BLOCKED, celErrors, isBlocking } from './cel.js';
import { prune, validate } from './schema.js';
import { structuralErrors } from './structural.js';

// A FAKE Kubernetes API server, faithful to the real protocol for what modeld-controller and
// kubectl use: legacy discovery (/api, /apis, per group-version resource lists with short names
// and subresources), list + watch with resourceVersions, bookmarks and 410 Gone after
// compaction, create/get/update/patch (merge, strategic merge, JSON patch)/delete, the status
// subresource (spec and status written separately; generation bumped on spec changes only),
// 409 Conflict on a stale resourceVersion, CRDs that register new types (schema validation and
// pruning; the CRD's own x-kubernetes-validations CEL rules evaluated by a CEL library, cel.ts;
// printer columns as server-side Tables for kubectl's `Accept: application/json;as=Table;v=v1;
// g=meta.k8s.io`, cells by the JSONPath subset in jsonpath.ts, as apiextensions-apiserver's
// tableconvertor), Events through both events.k8s.io/v1 and core/v1 (mirrorEvent), field
// selectors on any field path (kubectl describe's involvedObject.*), ownerReferences with
// background garbage collection, and Leases. Invalid objects get 422 with reason Invalid and
// details.causes, from which kubectl prints `The <Kind> "<name>" is invalid: <field>: <detail>`.
// Not emulated: auth beyond an optional bearer token, server-side apply, pagination, admission,
// finalizers, CEL cost limits.

export interface ResourceType {
  group: string; // '' for core
  version: string;
  plural: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  shortNames?: string[];
  statusSubresource: boolean;
  /** CRDs: openAPIV3Schema and printer columns. */
  schema?: Record<string, any>;
  printerColumns?: Array<{ name: string; type: string; jsonPath: string; description?: string; priority?: number }>;
  /** Custom resources refuse strategic merge patches (415), as the real server does. */
  custom: boolean;
}

interface StoredEvent {
  rv: number;
  typeKey: string;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: any;
}

interface Watcher {
  typeKey: string;
  namespace?: string;
  selector: (o: any) => boolean;
  res: ServerResponse;
  bookmarks: boolean;
}

export interface FaultRule {
  method?: string;
  path: RegExp;
  status: number;
  times: number;
  /** The fault is answered only once this settles (a request held in flight, as a slow API server would). */
  hold?: Promise<unknown>;
}

export interface FakeKubeOptions {
  /** Events kept for watches; older resourceVersions get 410 Gone. */
  maxEvents?: number;
  bookmarkIntervalMs?: number;
  token?: string;
}

const BUILTIN: ResourceType[] = [
  { group: '', version: 'v1', plural: 'namespaces', singular: 'namespace', kind: 'Namespace', namespaced: false, shortNames: ['ns'], statusSubresource: true, custom: false },
  { group: '', version: 'v1', plural: 'nodes', singular: 'node', kind: 'Node', namespaced: false, shortNames: ['no'], statusSubresource: true, custom: false },
  { group: '', version: 'v1', plural: 'services', singular: 'service', kind: 'Service', namespaced: true, shortNames: ['svc'], statusSubresource: true, custom: false },
  // core/v1 Event: no spec or status; involvedObject, reason, message, type, source, count at the top level.
  { group: '', version: 'v1', plural: 'events', singular: 'event', kind: 'Event', namespaced: true, shortNames: ['ev'], statusSubresource: false, custom: false },
  // events.k8s.io/v1 Event: the same objects seen the new way (regarding, note, reportingController).
  { group: 'events.k8s.io', version: 'v1', plural: 'events', singular: 'event', kind: 'Event', namespaced: true, shortNames: ['ev'], statusSubresource: false, custom: false },
  { group: '', version: 'v1', plural: 'configmaps', singular: 'configmap', kind: 'ConfigMap', namespaced: true, shortNames: ['cm'], statusSubresource: false, custom: false },
  { group: '', version: 'v1', plural: 'serviceaccounts', singular: 'serviceaccount', kind: 'ServiceAccount', namespaced: true, shortNames: ['sa'], statusSubresource: false, custom: false },
  { group: 'apps', version: 'v1', plural: 'deployments', singular: 'deployment', kind: 'Deployment', namespaced: true, shortNames: ['deploy'], statusSubresource: true, custom: false },
  { group: 'coordination.k8s.io', version: 'v1', plural: 'leases', singular: 'lease', kind: 'Lease', namespaced: true, statusSubresource: false, custom: false },
  { group: 'apiextensions.k8s.io', version: 'v1', plural: 'customresourcedefinitions', singular: 'customresourcedefinition', kind: 'CustomResourceDefinition', namespaced: false, shortNames: ['crd', 'crds'], statusSubresource: true, custom: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterroles', singular: 'clusterrole', kind: 'ClusterRole', namespaced: false, statusSubresource: false, custom: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'clusterrolebindings', singular: 'clusterrolebinding', kind: 'ClusterRoleBinding', namespaced: false, statusSubresource: false, custom: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'roles', singular: 'role', kind: 'Role', namespaced: true, statusSubresource: false, custom: false },
  { group: 'rbac.authorization.k8s.io', version: 'v1', plural: 'rolebindings', singular: 'rolebinding', kind: 'RoleBinding', namespaced: true, statusSubresource: false, custom: false },
];

const typeKeyOf = (t: { group: string; version: string; plural: string }) => `${t.group}/${t.version}/${t.plural}`;
const apiVersionOf = (t: ResourceType) => (t.group ? `${t.group}/${t.version}` : t.version);
const objKey = (ns: string | undefined, name: string) => (ns ? `${ns}/${name}` : name);

class HttpError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

function statusBody(code: number, reason: string, message: string, details?: Record<string, unknown>) {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, details, code };
}

/** Label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated (set-based `in` too). */
export function parseLabelSelector(sel: string | null): (labels: Record<string, string> | undefined) => boolean {
  if (!sel) return () => true;
  const terms = sel.split(/,(?![^(]*\))/).map((s) => s.trim()).filter(Boolean);
  const tests = terms.map((t) => {
    let m: RegExpMatchArray | null;
    if ((m = t.match(/^([^!=\s]+)\s+(in|notin)\s+\(([^)]*)\)$/))) {
      const vals = m[3].split(',').map((v) => v.trim());
      const neg = m[2] === 'notin';
      const k = m[1];
      return (l: Record<string, string>) => (k in l && vals.includes(l[k])) !== neg;
    }
    if ((m = t.match(/^([^!=]+)!=(.*)$/))) return (l: Record<string, string>) => l[m![1]] !== m![2];
    if ((m = t.match(/^([^!=]+)==?(.*)$/))) return (l: Record<string, string>) => l[m![1]] === m![2];
    if (t.startsWith('!')) return (l: Record<string, string>) => !(t.slice(1) in l);
    return (l: Record<string, string>) => t in l;
  });
  return (labels) => tests.every((f) => f(labels ?? {}));
}

/**
 * Field selectors: `a.b=v`, `a.b==v`, `a.b!=v`, comma-separated, on the object's fields by dotted
 * path. The real server allows a per-type set (every type metadata.name and metadata.namespace;
 * core/v1 Event also involvedObject.{kind,namespace,name,uid,apiVersion,resourceVersion,fieldPath},
 * reason, reportingComponent, source, type: pkg/registry/core/event/strategy.go ToSelectableFields),
 * which is what `kubectl describe` sends to find an object's events.
 */
export function parseFieldSelector(sel: string | null): (o: any) => boolean {
  if (!sel) return () => true;
  const tests = sel.split(',').filter(Boolean).map((t) => {
    const m = t.match(/^([^!=]+)(==|=|!=)(.*)$/);
    if (!m) throw new HttpError(400, 'BadRequest', `invalid field selector: ${t}`);
    const path = m[1] === 'source' ? ['source', 'component'] : m[1].split('.');
    const want = m[3];
    const neg = m[2] === '!=';
    return (o: any) => (String(path.reduce((x, k) => (x == null ? undefined : x[k]), o) ?? '') === want) !== neg;
  });
  return (o) => tests.every((f) => f(o));
}

function age(ts: string | undefined): string {
  if (!ts) return '<unknown>';
  const s = Math.max(0, Math.floor((Date.now() - Date.parse(ts)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}


export class FakeKubeApi {
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly types = new Map<string, ResourceType>();
  private readonly store = new Map<string, Map<string, any>>();
  private events: StoredEvent[] = [];
  private rv = 1;
  private compactedRv = 0;
  private readonly watchers = new Set<Watcher>();
  private readonly faults: FaultRule[] = [];
  private bookmarkTimer: NodeJS.Timeout | undefined;
  /** Every request, for tests that count writes. */
  readonly requests: Array<{ method: string; path: string; contentType?: string; status: number; at: number }> = [];
  url = '';

  constructor(private readonly opts: FakeKubeOptions = {}) {
    for (const t of BUILTIN) this.addType(t);
    for (const ns of ['default', 'kube-system', 'kube-public']) this.createObject(this.types.get('/v1/namespaces')!, undefined, { metadata: { name: ns } });
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, '127.0.0.1', () => resolve()));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    this.bookmarkTimer = setInterval(() => this.sendBookmarks(), this.opts.bookmarkIntervalMs ?? 1000);
    this.bookmarkTimer.unref();
    return this;
  }

  async stop(): Promise<void> {
    clearInterval(this.bookmarkTimer);
    for (const w of this.watchers) w.res.destroy();
    this.watchers.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  /** A kubeconfig file for this server (kubectl and @kubernetes/client-node read it). */
  writeKubeconfig(path: string): string {
    const user = this.opts.token ? `    token: ${this.opts.token}\n` : '    {}\n';
    writeFileSync(
      path,
      `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: ${this.url}\n    insecure-skip-tls-verify: true\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n${user}`,
    );
    return path;
  }

  // ---- test controls -------------------------------------------------------------------

  /** Forgets the event history (like etcd compaction): watches from older versions get 410. */
  compact(): void {
    this.compactedRv = this.rv;
    this.events = [];
  }

  /** Cuts every open watch mid-stream, without a clean end. */
  breakWatches(): void {
    for (const w of this.watchers) w.res.socket?.destroy();
    this.watchers.clear();
  }

  /** The next `times` requests matching get `status` (a Status body) instead of being served. */
  failNext(rule: Omit<FaultRule, 'times'> & { times?: number }): void {
    this.faults.push({ times: 1, ...rule });
  }

  watcherCount(): number {
    return this.watchers.size;
  }

  currentResourceVersion(): string {
    return String(this.rv);
  }

  /** Direct access for tests: get/create/update/delete without HTTP. */
  get(typeKey: string, ns: string | undefined, name: string): any {
    const o = this.store.get(typeKey)?.get(objKey(ns, name));
    return o && structuredClone(o);
  }

  list(typeKey: string): any[] {
    return [...(this.store.get(typeKey)?.values() ?? [])].map((o) => structuredClone(o));
  }

  create(typeKey: string, obj: any): any {
    const t = this.types.get(typeKey);
    if (!t) throw new Error(`unknown type ${typeKey}`);
    return structuredClone(this.createObject(t, obj.metadata?.namespace, structuredClone(obj)));
  }

  /** Replaces labels of a Node (or anything), as `kubectl label` would. */
  patch(typeKey: string, ns: string | undefined, name: string, patch: any, opts: { status?: boolean } = {}): any {
    const t = this.types.get(typeKey)!;
    return structuredClone(this.patchObject(t, ns, name, 'application/merge-patch+json', patch, !!opts.status));
  }

  remove(typeKey: string, ns: string | undefined, name: string): void {
    this.deleteObject(this.types.get(typeKey)!, ns, name);
  }

  // ---- types ---------------------------------------------------------------------------

  private addType(t: ResourceType) {
    const key = typeKeyOf(t);
    this.types.set(key, t);
    if (!this.store.has(key)) this.store.set(key, new Map());
  }

  /** What creating a CustomResourceDefinition does: serve its versions. */
  private registerCrd(crd: any) {
    const s = crd.spec;
    for (const v of s.versions ?? []) {
      if (!v.served) continue;
      this.addType({
        group: s.group,
        version: v.name,
        plural: s.names.plural,
        singular: s.names.singular ?? s.names.kind.toLowerCase(),
        kind: s.names.kind,
        namespaced: s.scope === 'Namespaced',
        shortNames: s.names.shortNames,
        statusSubresource: !!v.subresources?.status,
        schema: v.schema?.openAPIV3Schema,
        printerColumns: v.additionalPrinterColumns,
        custom: true,
      });
    }
  }

  // ---- storage -------------------------------------------------------------------------

  private record(t: ResourceType, type: StoredEvent['type'], obj: any) {
    const ev: StoredEvent = { rv: this.rv, typeKey: typeKeyOf(t), type, object: structuredClone(obj) };
    this.events.push(ev);
    const max = this.opts.maxEvents ?? 5000;
    if (this.events.length > max) {
      const dropped = this.events.splice(0, this.events.length - max);
      this.compactedRv = dropped[dropped.length - 1].rv;
    }
    for (const w of this.watchers) if (this.watches(w, ev)) this.writeEvent(w, ev.type, ev.object);
  }

  private watches(w: Watcher, ev: StoredEvent) {
    return w.typeKey === ev.typeKey && (!w.namespace || ev.object.metadata.namespace === w.namespace) && w.selector(ev.object);
  }

  private writeEvent(w: Watcher, type: string, object: any) {
    w.res.write(JSON.stringify({ type, object }) + '\n');
  }

  private sendBookmarks() {
    for (const w of this.watchers) {
      if (!w.bookmarks) continue;
      const t = this.types.get(w.typeKey)!;
      this.writeEvent(w, 'BOOKMARK', { kind: t.kind, apiVersion: apiVersionOf(t), metadata: { resourceVersion: String(this.rv) } });
    }
  }

  private createObject(t: ResourceType, ns: string | undefined, body: any): any {
    if (!body || typeof body !== 'object' || !body.metadata) throw new HttpError(400, 'BadRequest', 'the body is not an object with metadata');
    const m = body.metadata;
    if (t.namespaced) {
      if (m.namespace && ns && m.namespace !== ns) throw new HttpError(400, 'BadRequest', 'the namespace of the provided object does not match the namespace sent on the request');
      ns = ns ?? m.namespace ?? 'default';
      if (!this.store.get('/v1/namespaces')!.has(ns!)) throw new HttpError(404, 'NotFound', `namespaces "${ns}" not found`, { name: ns, kind: 'namespaces' });
    } else ns = undefined;
    if (!m.name && m.generateName) m.name = m.generateName + randomUUID().slice(0, 5);
    if (!m.name) throw new HttpError(422, 'Invalid', `${t.kind} "" is invalid: metadata.name: Required value: name or generateName is required`);
    const store = this.store.get(typeKeyOf(t))!;
    const key = objKey(ns, m.name);
    if (store.has(key)) throw new HttpError(409, 'AlreadyExists', `${t.plural}${t.group ? '.' + t.group : ''} "${m.name}" already exists`, { name: m.name, group: t.group, kind: t.plural });
    const obj = structuredClone(body);
    obj.apiVersion = apiVersionOf(t);
    obj.kind = t.kind;
    if (t.statusSubresource && t.custom) delete obj.status; // status is ignored on create
    this.admit(t, obj, m.name);
    this.rv++;
    obj.metadata = { ...obj.metadata, namespace: ns, uid: randomUUID(), resourceVersion: String(this.rv), generation: 1, creationTimestamp: new Date().toISOString().replace(/\.\d+Z$/, 'Z') };
    if (!ns) delete obj.metadata.namespace;
    delete obj.metadata.deletionTimestamp;
    store.set(key, obj);
    if (t.kind === 'CustomResourceDefinition') this.registerCrd(obj);
    this.record(t, 'ADDED', obj);
    if (t.group === 'events.k8s.io') this.mirrorEvent(obj);
    // As the real collector: a dependent created after its owner went (a write in flight when
    // the owner was deleted) is collected too.
    if (obj.metadata.ownerReferences?.length) setImmediate(() => this.collectGarbage());
    return obj;
  }

  /**
   * The real server stores one Event and serves it through both APIs (pkg/apis/events/v1
   * conversion); the fake keeps a core/v1 copy of each Event created through events.k8s.io/v1
   * (creates only: the recorder never updates), which is what kubectl describe and kubectl events
   * list: regarding -> involvedObject, note -> message, reportingController -> reportingComponent,
   * deprecatedSource/-Count/-FirstTimestamp/-LastTimestamp -> source/count/first-/lastTimestamp.
   */
  private mirrorEvent(e: any) {
    const core: any = {
      apiVersion: 'v1',
      kind: 'Event',
      metadata: e.metadata,
      involvedObject: e.regarding,
      related: e.related,
      reason: e.reason,
      message: e.note,
      type: e.type,
      action: e.action,
      eventTime: e.eventTime,
      series: e.series,
      reportingComponent: e.reportingController,
      reportingInstance: e.reportingInstance,
      source: e.deprecatedSource ?? {},
      count: e.deprecatedCount,
      firstTimestamp: e.deprecatedFirstTimestamp ?? null,
      lastTimestamp: e.deprecatedLastTimestamp ?? null,
    };
    for (const k of Object.keys(core)) if (core[k] === undefined) delete core[k];
    const t = this.types.get('/v1/events')!;
    this.store.get('/v1/events')!.set(objKey(e.metadata.namespace, e.metadata.name), core);
    this.record(t, 'ADDED', core);
  }

  /** events.k8s.io/v1 create validation (pkg/apis/core/validation/events.go ValidateEventCreate). */
  private admitEvent(e: any, name: string) {
    const errors: string[] = [];
    if (!e.eventTime) errors.push('eventTime: Required value');
    if (e.type !== 'Normal' && e.type !== 'Warning') errors.push(`type: Invalid value: "": has invalid value: ${e.type}`);
    for (const f of ['deprecatedFirstTimestamp', 'deprecatedLastTimestamp', 'deprecatedCount', 'deprecatedSource']) if (e[f] !== undefined && e[f] !== null && !(f === 'deprecatedSource' && !e[f].component && !e[f].host)) errors.push(`${f}: Invalid value: "": needs to be unset`);
    if (!e.reportingController) errors.push('reportingController: Required value');
    if (!e.reportingInstance) errors.push('reportingInstance: Required value');
    else if (e.reportingInstance.length > 128) errors.push('reportingInstance: Invalid value: "": can have at most 128 characters');
    if (!e.action) errors.push('action: Required value');
    else if (e.action.length > 128) errors.push('action: Invalid value: "": can have at most 128 characters');
    if (!e.reason) errors.push('reason: Required value');
    else if (e.reason.length > 128) errors.push('reason: Invalid value: "": can have at most 128 characters');
    if (e.note && Buffer.byteLength(e.note) > 1024) errors.push('note: Invalid value: "": can have at most 1024 characters');
    if (!e.regarding?.namespace && e.metadata.namespace !== 'default' && e.metadata.namespace !== 'kube-system') errors.push('regarding.namespace: Invalid value: "": does not match event.namespace');
    if (errors.length) throw new HttpError(422, 'Invalid', `Event.events.k8s.io "${name}" is invalid: ${errors.length > 1 ? '[' + errors.join(', ') + ']' : errors[0]}`);
  }

  /**
   * Validation and pruning against a CRD's schema (the real server does both). apiVersion, kind
   * and metadata at the root are the API server's, whatever the schema says (or omits): pruning
   * skips them (apiextensions-apiserver pkg/apiserver/schema/pruning/algorithm.go, isResourceRoot)
   * and so does validation of the CRD's schema. A CRD itself must have structural schemas.
   */
  private admit(t: ResourceType, obj: any, name: string, old?: any) {
    if (t.kind === 'CustomResourceDefinition') return this.admitCrd(obj, name);
    if (t.kind === 'Event' && t.group === 'events.k8s.io' && !old) return this.admitEvent(obj, name);
    if (!t.schema) return;
    const { apiVersion, kind, metadata, ...rest } = obj;
    const errors = validate(t.schema, rest).map((text) => ({ text, field: text.split(':')[0], reason: 'FieldValueInvalid' }));
    // The CRD's CEL rules, unless the schema errors already block them (strategy.go hasBlockingErr).
    if (errors.some((e) => isBlocking(e.text))) errors.push({ text: `<nil>: Invalid value: "null": ${BLOCKED}`, field: '<nil>', reason: 'FieldValueInvalid' });
    else {
      const { apiVersion: _v, kind: _k, metadata: _m, ...oldRest } = old ?? {};
      errors.push(...celErrors(t.schema, rest, old ? oldRest : undefined));
    }
    if (errors.length) {
      // errors.NewInvalid: `<Kind>.<group> "<name>" is invalid: <error>` or `[<error>, <error>]`,
      // each cause with the field error's type as reason, its detail line as message.
      const texts = errors.map((e) => e.text);
      throw new HttpError(422, 'Invalid', `${t.kind}${t.group ? '.' + t.group : ''} "${name}" is invalid: ${texts.length > 1 ? '[' + texts.join(', ') + ']' : texts[0]}`, {
        name,
        group: t.group,
        kind: t.kind,
        causes: errors.map((e) => ({ reason: e.reason, message: e.text.slice(e.field.length + 2), field: e.field })),
      });
    }
    const pruned = { ...prune(t.schema, rest), apiVersion, kind, metadata };
    for (const k of Object.keys(obj)) if (!(k in pruned)) delete obj[k];
    Object.assign(obj, pruned);
  }

  /** apiextensions v1 validation of a CRD: every served version's schema must be structural. */
  private admitCrd(crd: any, name: string) {
    const errors: string[] = [];
    (crd.spec?.versions ?? []).forEach((v: any, i: number) => {
      if (v.schema?.openAPIV3Schema === undefined) errors.push(`spec.versions[${i}].schema.openAPIV3Schema: Required value: schemas are required`);
      else errors.push(...structuralErrors(v.schema.openAPIV3Schema, `spec.versions[${i}].schema.openAPIV3Schema`));
    });
    if (!errors.length) return;
    throw new HttpError(422, 'Invalid', `CustomResourceDefinition.apiextensions.k8s.io "${name}" is invalid: ${errors.length > 1 ? '[' + errors.join(', ') + ']' : errors[0]}`, {
      name,
      group: 'apiextensions.k8s.io',
      kind: 'CustomResourceDefinition',
      causes: errors.map((e) => ({ reason: 'FieldValueInvalid', message: e.slice(e.indexOf(':') + 2), field: e.split(':')[0] })),
    });
  }

  private existing(t: ResourceType, ns: string | undefined, name: string): any {
    const o = this.store.get(typeKeyOf(t))!.get(objKey(t.namespaced ? ns : undefined, name));
    if (!o) throw new HttpError(404, 'NotFound', `${t.plural}${t.group ? '.' + t.group : ''} "${name}" not found`, { name, group: t.group, kind: t.plural });
    return o;
  }

  /** PUT semantics, shared by update and patch. `statusOnly` is the /status subresource. */
  private updateObject(t: ResourceType, ns: string | undefined, name: string, body: any, statusOnly: boolean): any {
    const old = this.existing(t, ns, name);
    if (!body || typeof body !== 'object') throw new HttpError(400, 'BadRequest', 'the body is not an object');
    const wantRv = body.metadata?.resourceVersion;
    if (wantRv && wantRv !== old.metadata.resourceVersion) {
      throw new HttpError(409, 'Conflict', `Operation cannot be fulfilled on ${t.plural}${t.group ? '.' + t.group : ''} "${name}": the object has been modified; please apply your changes to the latest version and try again`, { name, group: t.group, kind: t.plural });
    }
    if (body.metadata?.name && body.metadata.name !== name) throw new HttpError(400, 'BadRequest', 'the name of the object does not match the name on the URL');
    let obj: any;
    if (statusOnly) {
      obj = { ...structuredClone(old), status: structuredClone(body.status) };
      if (obj.status === undefined) delete obj.status;
    } else {
      obj = structuredClone(body);
      if (t.statusSubresource) {
        if (old.status !== undefined) obj.status = structuredClone(old.status);
        else delete obj.status;
      }
      // Fields the server owns.
      obj.metadata = { ...obj.metadata, uid: old.metadata.uid, creationTimestamp: old.metadata.creationTimestamp, namespace: old.metadata.namespace, generation: old.metadata.generation };
      if (!old.metadata.namespace) delete obj.metadata.namespace;
    }
    obj.apiVersion = apiVersionOf(t);
    obj.kind = t.kind;
    this.admit(t, obj, name, old);
    const strip = (o: any) => {
      const { metadata: _m, status: _s, ...rest } = o;
      return JSON.stringify(rest);
    };
    const specChanged = !statusOnly && strip(obj) !== strip(old);
    if (specChanged) obj.metadata.generation = (old.metadata.generation ?? 1) + 1;
    const { resourceVersion: _a, ...oldMeta } = old.metadata;
    const { resourceVersion: _b, ...newMeta } = obj.metadata;
    // A write that changes nothing does not get a new resourceVersion or an event.
    if (JSON.stringify(oldMeta) === JSON.stringify(newMeta) && JSON.stringify({ ...old, metadata: 0 }) === JSON.stringify({ ...obj, metadata: 0 })) return old;
    this.rv++;
    obj.metadata.resourceVersion = String(this.rv);
    this.store.get(typeKeyOf(t))!.set(objKey(obj.metadata.namespace, name), obj);
    if (t.kind === 'CustomResourceDefinition') this.registerCrd(obj);
    this.record(t, 'MODIFIED', obj);
    if (obj.metadata.ownerReferences?.length) setImmediate(() => this.collectGarbage());
    return obj;
  }

  private patchObject(t: ResourceType, ns: string | undefined, name: string, contentType: string, patch: any, statusOnly: boolean): any {
    const old = this.existing(t, ns, name);
    let next: any;
    const type = contentType.split(';')[0].trim();
    try {
      if (type === 'application/merge-patch+json') next = mergePatch(old, patch);
      else if (type === 'application/strategic-merge-patch+json') {
        if (t.custom) throw new HttpError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml`);
        next = strategicMergePatch(old, patch);
      } else if (type === 'application/json-patch+json') next = jsonPatch(old, patch);
      else throw new HttpError(415, 'UnsupportedMediaType', `the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml${t.custom ? '' : ', application/strategic-merge-patch+json'}`);
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError(422, 'Invalid', (err as Error).message);
    }
    // A resourceVersion in the patch is a precondition; none means "patch the latest".
    if (!patch?.metadata?.resourceVersion) next.metadata = { ...next.metadata, resourceVersion: old.metadata.resourceVersion };
    return this.updateObject(t, ns, name, next, statusOnly);
  }

  private deleteObject(t: ResourceType, ns: string | undefined, name: string): any {
    const old = this.existing(t, ns, name);
    this.store.get(typeKeyOf(t))!.delete(objKey(old.metadata.namespace, name));
    this.rv++;
    const gone = { ...structuredClone(old), metadata: { ...old.metadata, resourceVersion: String(this.rv) } };
    this.record(t, 'DELETED', gone);
    if (t.kind === 'CustomResourceDefinition') {
      for (const v of old.spec.versions ?? []) {
        const key = typeKeyOf({ group: old.spec.group, version: v.name, plural: old.spec.names.plural });
        this.types.delete(key);
        this.store.delete(key);
      }
    }
    // The garbage collector, in the background: dependents whose owners are all gone follow.
    setImmediate(() => this.collectGarbage());
    return gone;
  }

  private collectGarbage() {
    const uids = new Set<string>();
    for (const store of this.store.values()) for (const o of store.values()) uids.add(o.metadata.uid);
    for (const [key, store] of this.store) {
      const t = this.types.get(key);
      if (!t) continue;
      for (const o of [...store.values()]) {
        const owners = o.metadata.ownerReferences ?? [];
        if (owners.length && owners.every((r: { uid: string }) => !uids.has(r.uid))) this.deleteObject(t, o.metadata.namespace, o.metadata.name);
      }
    }
  }

  // ---- HTTP ----------------------------------------------------------------------------

  private async handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = req.method ?? 'GET';
    const entry = { method, path: url.pathname, contentType: req.headers['content-type'], status: 200, at: performance.now() };
    this.requests.push(entry);
    if (this.requests.length > 20000) this.requests.splice(0, 10000);
    const send = (code: number, body: unknown) => {
      entry.status = code;
      const text = JSON.stringify(body);
      res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      if (this.opts.token && req.headers.authorization !== `Bearer ${this.opts.token}`) throw new HttpError(401, 'Unauthorized', 'Unauthorized');
      const fault = this.faults.find((f) => (!f.method || f.method === method) && f.path.test(url.pathname));
      if (fault) {
        if (--fault.times <= 0) this.faults.splice(this.faults.indexOf(fault), 1);
        await fault.hold;
        throw new HttpError(fault.status, fault.status === 409 ? 'Conflict' : fault.status === 410 ? 'Expired' : 'InternalError', `injected fault ${fault.status}`);
      }
      const body = await readBody(req);
      const out = this.route(method, url, req, res, body);
      if (out === undefined) return; // a watch owns the response now
      send(out.code, out.body);
    } catch (err) {
      if (err instanceof HttpError) send(err.code, statusBody(err.code, err.reason, err.message, err.details));
      else send(500, statusBody(500, 'InternalError', (err as Error).message));
    }
  }

  private route(method: string, url: URL, req: IncomingMessage, res: ServerResponse, body: any): { code: number; body: unknown } | undefined {
    const p = url.pathname.replace(/\/+$/, '');
    if (p === '/version') return { code: 200, body: { major: '1', minor: '32', gitVersion: 'v1.32.0-fake', platform: 'linux/amd64' } };
    if (p === '/healthz' || p === '/readyz' || p === '/livez') return { code: 200, body: 'ok' };
    if (p === '/api') return { code: 200, body: { kind: 'APIVersions', versions: ['v1'], serverAddressByClientCIDRs: [{ clientCIDR: '0.0.0.0/0', serverAddress: url.host }] } };
    if (p === '/apis') return { code: 200, body: { kind: 'APIGroupList', apiVersion: 'v1', groups: this.groups() } };
    const parts = p.split('/').filter(Boolean);
    let group: string;
    let version: string;
    let rest: string[];
    if (parts[0] === 'api' && parts[1]) [group, version, rest] = ['', parts[1], parts.slice(2)];
    else if (parts[0] === 'apis' && parts[1]) {
      if (!parts[2]) {
        const g = this.groups().find((x) => x.name === parts[1]);
        if (!g) throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
        return { code: 200, body: { kind: 'APIGroup', apiVersion: 'v1', ...g } };
      }
      [group, version, rest] = [parts[1], parts[2], parts.slice(3)];
    } else throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    if (!rest.length) {
      if (method !== 'GET') throw new HttpError(405, 'MethodNotAllowed', 'method not allowed');
      return { code: 200, body: this.resourceList(group, version) };
    }
    let ns: string | undefined;
    if (rest[0] === 'namespaces' && rest.length >= 3) {
      ns = rest[1];
      rest = rest.slice(2);
    }
    const [plural, name, sub] = rest;
    const t = this.types.get(typeKeyOf({ group, version, plural }));
    if (!t || (ns && !t.namespaced) || rest.length > 3 || (sub && sub !== 'status')) throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    if (sub === 'status' && !t.statusSubresource) throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    const q = url.searchParams;
    if (!name) {
      if (method === 'GET') {
        if (q.get('watch') === 'true' || q.get('watch') === '1') {
          this.startWatch(t, ns, q, res);
          return undefined;
        }
        return { code: 200, body: this.listBody(t, ns, q, req) };
      }
      if (method === 'POST') {
        if (q.get('dryRun')) return { code: 201, body: body };
        return { code: 201, body: this.createObject(t, ns, body) };
      }
      throw new HttpError(405, 'MethodNotAllowed', 'method not allowed');
    }
    switch (method) {
      case 'GET':
        return { code: 200, body: this.maybeTable(t, [this.existing(t, ns, name)], req) ?? this.existing(t, ns, name) };
      case 'PUT':
        return { code: 200, body: this.updateObject(t, ns, name, body, sub === 'status') };
      case 'PATCH':
        return { code: 200, body: this.patchObject(t, ns, name, String(req.headers['content-type'] ?? ''), body, sub === 'status') };
      case 'DELETE': {
        const gone = this.deleteObject(t, ns, name);
        return { code: 200, body: gone };
      }
      default:
        throw new HttpError(405, 'MethodNotAllowed', 'method not allowed');
    }
  }

  private groups() {
    const byGroup = new Map<string, Set<string>>();
    for (const t of this.types.values()) if (t.group) (byGroup.get(t.group) ?? byGroup.set(t.group, new Set()).get(t.group)!).add(t.version);
    return [...byGroup].map(([name, versions]) => {
      const vs = [...versions].map((v) => ({ groupVersion: `${name}/${v}`, version: v }));
      return { name, versions: vs, preferredVersion: vs[0] };
    });
  }

  private resourceList(group: string, version: string) {
    const resources: unknown[] = [];
    for (const t of this.types.values()) {
      if (t.group !== group || t.version !== version) continue;
      resources.push({
        name: t.plural,
        singularName: t.singular,
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'],
        shortNames: t.shortNames,
        storageVersionHash: '',
      });
      if (t.statusSubresource) resources.push({ name: `${t.plural}/status`, singularName: '', namespaced: t.namespaced, kind: t.kind, verbs: ['get', 'patch', 'update'] });
    }
    if (!resources.length) throw new HttpError(404, 'NotFound', 'the server could not find the requested resource');
    return { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: group ? `${group}/${version}` : version, resources };
  }

  private selected(t: ResourceType, ns: string | undefined, q: URLSearchParams) {
    const labels = parseLabelSelector(q.get('labelSelector'));
    const fields = parseFieldSelector(q.get('fieldSelector'));
    return (o: any) => (!ns || o.metadata.namespace === ns) && labels(o.metadata.labels) && fields(o);
  }

  private listBody(t: ResourceType, ns: string | undefined, q: URLSearchParams, req: IncomingMessage) {
    const sel = this.selected(t, ns, q);
    const items = [...this.store.get(typeKeyOf(t))!.values()].filter(sel).sort((a, b) => objKey(a.metadata.namespace, a.metadata.name).localeCompare(objKey(b.metadata.namespace, b.metadata.name)));
    return (
      this.maybeTable(t, items, req) ?? {
        kind: `${t.kind}List`,
        apiVersion: apiVersionOf(t),
        metadata: { resourceVersion: String(this.rv) },
        items,
      }
    );
  }

  /** `kubectl get` asks for a server-side Table; CRDs fill it from additionalPrinterColumns. */
  private maybeTable(t: ResourceType, items: any[], req: IncomingMessage) {
    const accept = String(req.headers.accept ?? '');
    if (!/as=Table/.test(accept) || !/v=v1(;|,|$)/.test(accept)) return undefined;
    const cols = t.printerColumns ?? [];
    const columnDefinitions = [
      { name: 'Name', type: 'string', format: 'name', description: 'Name must be unique within a namespace.', priority: 0 },
      ...cols.map((c) => ({ name: c.name, type: c.type === 'date' ? 'date' : c.type, format: '', description: c.description ?? '', priority: c.priority ?? 0 })),
      ...(cols.some((c) => c.name === 'Age') ? [] : [{ name: 'Age', type: 'date', format: '', description: 'CreationTimestamp', priority: 0 }]),
    ];
    const rows = items.map((o) => ({
      cells: [
        o.metadata.name,
        ...cols.map((c) => {
          const v = cellOf(o, c.jsonPath);
          return c.type === 'date' ? age(v as string) : (v ?? null);
        }),
        ...(cols.some((c) => c.name === 'Age') ? [] : [age(o.metadata.creationTimestamp)]),
      ],
      object: { kind: 'PartialObjectMetadata', apiVersion: 'meta.k8s.io/v1', metadata: o.metadata },
    }));
    return { kind: 'Table', apiVersion: 'meta.k8s.io/v1', metadata: { resourceVersion: String(this.rv) }, columnDefinitions, rows };
  }

  private startWatch(t: ResourceType, ns: string | undefined, q: URLSearchParams, res: ServerResponse) {
    const w: Watcher = { typeKey: typeKeyOf(t), namespace: ns, selector: this.selected(t, ns, q), res, bookmarks: q.get('allowWatchBookmarks') === 'true' };
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const from = q.get('resourceVersion');
    if (!from || from === '0') {
      // "Any" version: the current state as ADDED events, then changes.
      for (const o of this.store.get(w.typeKey)!.values()) if (w.selector(o)) this.writeEvent(w, 'ADDED', o);
    } else {
      const n = Number(from);
      if (!Number.isFinite(n) || n < this.compactedRv) {
        // The real server answers 200 and then one ERROR event carrying a 410 Status.
        this.writeEvent(w, 'ERROR', statusBody(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`));
        res.end();
        return;
      }
      for (const ev of this.events) if (ev.rv > n && this.watches(w, ev)) this.writeEvent(w, ev.type, ev.object);
    }
    this.watchers.add(w);
    const timeout = Number(q.get('timeoutSeconds') ?? 0);
    const timer = timeout > 0 ? setTimeout(() => res.end(), timeout * 1000) : undefined;
    timer?.unref();
    res.on('close', () => {
      clearTimeout(timer);
      this.watchers.delete(w);
    });
  }
}

async function readBody(req: IncomingMessage): Promise<any> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (!chunks.length) return undefined;
  const text = Buffer.concat(chunks).toString();
  try {
    return JSON.parse(text);
  } catch {
    throw new HttpError(400, 'BadRequest', `the body is not JSON: ${text.slice(0, 100)}`);
  }
}

export const TYPES = {
  nodes: '/v1/nodes',
  events: '/v1/events',
  eventsV1: 'events.k8s.io/v1/events',
  services: '/v1/services',
  deployments: 'apps/v1/deployments',
  leases: 'coordination.k8s.io/v1/leases',
  crds: 'apiextensions.k8s.io/v1/customresourcedefinitions',
  inferencemodels: 'ai.kubeedge.io/v1alpha1/inferencemodels',
};

export async function startFakeKubeApi(opts: FakeKubeOptions = {}): Promise<FakeKubeApi> {
  return new FakeKubeApi(opts).start();
}
