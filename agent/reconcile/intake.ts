import {
  DNS_LABEL,
  parseMessage,
  parseTopic,
  resolveTarget,
  specProblems,
  type Message,
  type ModelContent,
} from '../../shared/index.js';
import type { KeyObject } from 'node:crypto';
import { verifyEnvelope } from '../../shared/signing.js';
import type { Config } from '../config/schema.js';
import type { HelloNonce } from '../link/hello-nonce.js';
import { isModeldError, type ErrorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/index.js';
import type { DesiredSpec } from '../store/specs.js';
import type { Reporter } from './report.js';
import { resourceFreshness, syncFreshness } from './freshness.js';
import { selectsNode } from './selector.js';
import { specHash } from './spec-hash.js';

// Intake: every MQTT message becomes either a change of desired state (and a kick of the runner)
// or a logged, reported refusal that changes nothing.

export interface IntakeDeps {
  config: Config;
  store: Store;
  log: Logger;
  reporter: Reporter;
  /** Throws ModeldError('URLNotAllowed') for a URL the node may not fetch. */
  checkUrl: (url: string) => void;
  kick: (namespace: string, name: string, opts: { cancel: boolean }) => void;
  /** keyId -> trusted public key (security.trustedKeys); empty or absent: messages are not checked. */
  trusted?: ReadonlyMap<string, KeyObject>;
  /** The nonce of the current hello (the link's), which a fresh sync echoes. */
  hello?: HelloNonce;
}

/** The freshness record of the node's syncs. */
const SYNC = '_sync';

export type IntakeOutcome = { accepted: true; changed: string[] } | { accepted: false; reason: ErrorCode; message: string };

export class Intake {
  constructor(private readonly deps: IntakeDeps) {}

  /** Whether every message from the cloud must be signed (trusted keys are configured). */
  get signing(): boolean {
    return (this.deps.trusted?.size ?? 0) > 0;
  }

  /** Never throws: bad input is logged and answered. */
  handle(topic: string, payload: Buffer | string): IntakeOutcome {
    try {
      return this.handleUnsafe(topic, payload);
    } catch (err) {
      this.deps.log.error({ topic, err: (err as Error).message }, 'message handling failed');
      return { accepted: false, reason: 'Internal', message: (err as Error).message };
    }
  }

  private handleUnsafe(topic: string, payload: Buffer | string): IntakeOutcome {
    const { config, log } = this.deps;
    const where = parseTopic(config.topics.prefix, topic);
    // Acks are the link's (it owns the outbox); they never reach here from a current link.
    if (!where || where.node !== config.node.name || where.kind === 'presence' || where.kind === 'ack') {
      return this.refuse(topic, undefined, 'BadMessage', `topic ${topic} is not one of this node's spec topics`);
    }
    if (where.kind === 'spec' && !(DNS_LABEL.test(where.namespace) && DNS_LABEL.test(where.name))) {
      // No model can have this name, and a status naming it would not be a valid message: log only.
      return this.refuse(topic, undefined, 'BadMessage', `topic ${topic} names no model (namespace and name must be DNS-1123 labels)`);
    }
    const named = where.kind === 'spec' ? { namespace: where.namespace, name: where.name } : undefined;
    if (this.signing) {
      const bad = this.badSignature(payload);
      if (bad) return this.refuse(topic, named, bad.reason, bad.message, bad.msgId);
    }
    const parsed = parseMessage(payload, config.limits.messageBytes);
    if (!parsed.ok) {
      const meta = (parsed.envelope?.content as { metadata?: { generation?: unknown } } | undefined)?.metadata;
      // The generation answered, when the refused message has a usable one (a status carries only those).
      const generation = Number.isSafeInteger(meta?.generation) && (meta!.generation as number) >= 0 ? (meta!.generation as number) : undefined;
      return this.refuse(topic, named, parsed.reason, parsed.message, parsed.envelope?.header.msg_id, generation);
    }
    const msg = parsed.message;
    const op = msg.route.operation;
    log.debug({ topic, op, msgId: msg.header.msg_id }, 'message');
    if (where.kind === 'sync') {
      if (op !== 'sync') return this.refuse(topic, undefined, 'BadMessage', `operation ${op} on the sync topic`);
      const sync = msg as Extract<Message, { route: { operation: 'sync' } }>;
      if (this.signing) {
        const current = this.deps.hello?.current ?? { used: false };
        const node = config.node.name;
        const fresh = syncFreshness(this.deps.store.freshness.maxSequence(node), msg.header.sequence ?? 0, sync.content.nonce, current, this.deps.store.freshness.get(node, SYNC)?.sequence);
        if (!fresh.fresh) return this.refuse(topic, undefined, 'Replayed', `replayed or stale: ${fresh.why}`, msg.header.msg_id);
        // One sync per hello may pass on the nonce alone.
        if (sync.content.nonce !== undefined && sync.content.nonce === current.nonce) this.deps.hello?.use();
        this.recordSync(sync);
      }
      return this.sync(topic, sync);
    }
    if (this.signing && named && (op === 'update' || op === 'insert' || op === 'delete')) {
      const meta = (msg.content as { metadata: { uid?: string; generation?: number } }).metadata;
      const got = { uid: meta.uid, generation: meta.generation ?? 0, sequence: msg.header.sequence ?? 0 };
      const key = `${named.namespace}/${named.name}`;
      const fresh = resourceFreshness(this.deps.store.freshness.get(config.node.name, key), got, { byGeneration: op !== 'delete' });
      if (!fresh.fresh) return this.refuse(topic, named, 'Replayed', `replayed or stale: ${fresh.why}`, msg.header.msg_id);
      this.deps.store.freshness.accept(config.node.name, key, op === 'delete' ? { ...got, generation: this.deps.store.freshness.get(config.node.name, key)?.generation ?? got.generation } : got);
    }
    if (op === 'update' || op === 'insert') {
      const content = msg.content as ModelContent;
      if (content.metadata.namespace !== where.namespace || content.metadata.name !== where.name) {
        return this.refuse(topic, named, 'BadMessage', `metadata ${content.metadata.namespace}/${content.metadata.name} does not match the topic`, msg.header.msg_id);
      }
      return this.upsert(topic, content, msg.header.msg_id);
    }
    if (op === 'delete') {
      const changed = this.remove(where.namespace, where.name, 'cloud') ? [`${where.namespace}/${where.name}`] : [];
      return { accepted: true, changed };
    }
    return this.refuse(topic, named, 'UnknownOperation', `operation ${op} is not accepted on a spec topic`, msg.header.msg_id);
  }

  /** The signature of the raw message (before any schema default is applied); undefined when good. */
  private badSignature(payload: Buffer | string): { reason: ErrorCode; message: string; msgId?: string } | undefined {
    const { config } = this.deps;
    const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
    if (size > config.limits.messageBytes) return undefined; // parseMessage refuses it, by size
    let raw: unknown;
    try {
      raw = JSON.parse(payload.toString());
    } catch {
      return undefined; // parseMessage refuses it: not JSON
    }
    const out = verifyEnvelope(raw, config.node.name, this.deps.trusted!);
    if (out.ok) return undefined;
    const id = (raw as { header?: { msg_id?: unknown } } | null)?.header?.msg_id;
    return { reason: out.reason, message: out.message, msgId: typeof id === 'string' && id.length <= 128 ? id : undefined };
  }

  /** An accepted sync: it, each item it names and each cloud model it removes are the newest seen. */
  private recordSync(msg: Extract<Message, { route: { operation: 'sync' } }>): void {
    const { store, config } = this.deps;
    const node = config.node.name;
    const sequence = msg.header.sequence ?? 0;
    const record = (key: string, got: { uid?: string; generation: number; sequence: number }) => {
      if (resourceFreshness(store.freshness.get(node, key), got, { byGeneration: true }).fresh) store.freshness.accept(node, key, got);
    };
    const keep = new Set<string>();
    for (const item of msg.content.items) {
      const key = `${item.metadata.namespace}/${item.metadata.name}`;
      keep.add(key);
      record(key, { uid: item.metadata.uid, generation: item.metadata.generation ?? 0, sequence });
    }
    for (const s of store.specs.list()) {
      const key = `${s.namespace}/${s.name}`;
      if (s.source === 'cloud' && !keep.has(key)) record(key, { uid: s.uid, generation: s.generation, sequence });
    }
    store.freshness.accept(node, SYNC, { generation: 0, sequence });
  }

  /** Checks a spec beyond its schema; undefined when it may be accepted. */
  private problem(content: ModelContent): { reason: ErrorCode; message: string } | undefined {
    const problems = specProblems(content.spec, { requireDigest: !this.deps.config.allowUnverified });
    if (problems.length) return { reason: problems[0].reason, message: problems.map((p) => p.message).join('; ') };
    const target = content.spec.image ? undefined : resolveTarget(content.spec);
    if (target) {
      try {
        this.deps.checkUrl(target.downloadURL);
      } catch (err) {
        if (isModeldError(err)) return { reason: err.code, message: err.message };
        throw err;
      }
    }
    return undefined;
  }

  /**
   * Accepts a spec from the cloud or a local file. Newer generation wins; the same spec again is
   * a no-op (answered with the current status); the cloud's spec replaces a local one.
   */
  upsert(topic: string, content: ModelContent, msgId: string, source: 'cloud' | 'local' = 'cloud', opts: { inSync?: boolean } = {}): IntakeOutcome {
    const { store, config, log } = this.deps;
    const { namespace, name, generation = 0, uid } = content.metadata;
    const named = { namespace, name };
    if (source === 'local' && config.security.trustedKeys.length > 0 && !config.security.allowLocalApply) {
      return this.refuse(topic, named, 'LocalApplyNotAllowed', `${namespace}/${name}: local specs are refused on this node (security.trustedKeys is set and security.allowLocalApply is false): only signed specs from the controller are served`, msgId, generation);
    }
    const bad = this.problem(content);
    if (bad) return this.refuse(topic, named, bad.reason, bad.message, msgId, generation);

    const selected = selectsNode(content.spec, config.node);
    if (!selected.ok) {
      log.info({ model: `${namespace}/${name}`, why: selected.why }, 'spec not meant for this node');
      return { accepted: true, changed: this.remove(namespace, name, source) ? [`${namespace}/${name}`] : [] };
    }

    const existing = store.specs.get(namespace, name);
    if (existing && existing.source === 'cloud' && source === 'local') {
      return this.refuse(topic, named, 'ManagedByCloud', `${namespace}/${name} is managed by the cloud; delete it there first`, msgId, generation);
    }
    const sameResource = existing && (!uid || !existing.uid || existing.uid === uid);
    if (existing && sameResource && existing.source === source && generation < existing.generation) {
      log.info({ model: `${namespace}/${name}`, generation, have: existing.generation }, 'older generation ignored');
      return { accepted: true, changed: [] };
    }
    const unchanged = existing && existing.source === source && specHash(existing.spec) === specHash(content.spec) && existing.generation === generation;
    if (unchanged) {
      // A sync reports every model once, at its end.
      if (!opts.inSync) this.reportCurrent(namespace, name);
      return { accepted: true, changed: [] };
    }
    const next: DesiredSpec = { namespace, name, uid, generation, spec: content.spec, msgId, source, updatedAt: Date.now() };
    store.specs.put(next);
    if (existing?.source === 'local' && source === 'cloud') {
      store.events.add({ namespace, name, kind: 'CloudOverride', message: 'a spec from the cloud replaced the local one' });
    }
    this.deps.reporter.report(namespace, name, {
      phase: 'Pending',
      reason: existing?.source === 'local' && source === 'cloud' ? 'CloudOverridesLocal' : undefined,
      message: content.spec.image ? 'image-based spec: deployed by the controller' : undefined,
    });
    this.deps.kick(namespace, name, { cancel: true });
    return { accepted: true, changed: [`${namespace}/${name}`] };
  }

  /** Removes the desired spec (the runner then stops and removes the model). */
  remove(namespace: string, name: string, source: 'cloud' | 'local'): boolean {
    const existing = this.deps.store.specs.get(namespace, name);
    if (!existing || (source === 'cloud' && existing.source === 'local')) return false;
    this.deps.store.specs.delete(namespace, name);
    this.deps.kick(namespace, name, { cancel: true });
    return true;
  }

  /** The node's complete desired set from the cloud: anything from the cloud not in it goes. */
  private sync(topic: string, msg: Extract<Message, { route: { operation: 'sync' } }>): IntakeOutcome {
    const { store, log } = this.deps;
    const keep = new Set(msg.content.items.map((item) => `${item.metadata.namespace}/${item.metadata.name}`));
    const gone = store.specs.list().filter((s) => s.source === 'cloud' && !keep.has(`${s.namespace}/${s.name}`));
    // Guarantee 10: a renamed or unregistered node is reported, not wiped. Only a controller that
    // knows this node may take away everything it has from the cloud. Decided before anything is
    // applied: a sync refused here changes nothing, its items included.
    const known = msg.content.nodeKnown;
    if (gone.length && (known === false || (known === undefined && keep.size === 0))) {
      const why = known === false ? `the cluster has no Node named ${this.deps.config.node.name}` : 'the sync would remove every model and does not say the node is known';
      log.error({ topic, node: this.deps.config.node.name, kept: gone.map((s) => `${s.namespace}/${s.name}`) }, 'the controller does not know this node: nothing is removed');
      store.events.add({ kind: 'UnknownNode', message: `sync not applied: ${why}; check node.name (kept ${gone.length} models)` });
      return { accepted: false, reason: 'UnknownNode', message: why };
    }
    const changed: string[] = [];
    /** Models whose status this sync already put in the outbox (a change, a refusal) or whose removal will. */
    const reported = new Set<string>();
    for (const item of msg.content.items) {
      const out = this.upsert(topic, item, msg.header.msg_id, 'cloud', { inSync: true });
      if (out.accepted) changed.push(...out.changed);
      if (!out.accepted || out.changed.length) reported.add(`${item.metadata.namespace}/${item.metadata.name}`);
    }
    for (const s of gone) if (this.remove(s.namespace, s.name, 'cloud')) changed.push(`${s.namespace}/${s.name}`);
    for (const key of changed) reported.add(key);
    // After every sync the node reports its full state (local models too): a controller that just
    // took over, or lost statuses on the way, learns everything the node holds.
    for (const m of store.models.list()) if (!reported.has(`${m.namespace}/${m.name}`)) this.reportCurrent(m.namespace, m.name);
    return { accepted: true, changed };
  }

  private reportCurrent(namespace: string, name: string): void {
    const m = this.deps.store.models.get(namespace, name);
    if (m) this.deps.reporter.report(namespace, name, { phase: m.phase, reason: m.reason, message: m.message });
  }

  private refuse(
    topic: string,
    model: { namespace: string; name: string } | undefined,
    reason: ErrorCode,
    message: string,
    msgId?: string,
    generation?: number,
  ): IntakeOutcome {
    this.deps.log.warn({ topic, reason, model: model && `${model.namespace}/${model.name}` }, `message refused: ${message}`);
    if (model) {
      this.deps.reporter.report(model.namespace, model.name, {
        phase: 'Failed',
        reason,
        message,
        parentMsgId: msgId ?? '',
        observedGeneration: generation,
      });
    }
    return { accepted: false, reason, message };
  }
}
