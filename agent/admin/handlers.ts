import type { IncomingMessage, ServerResponse } from 'node:http';
import { ModeldError } from '../errors.js';
import { runGc } from '../reconcile/gc-run.js';
import { defer, releaseDeferral } from '../reconcile/defer.js';
import { releaseHold, rollback } from '../reconcile/rollback.js';
import { AGENT_VERSION } from '../version.js';
import { applyLocal, deleteLocal, planApply } from './apply.js';
import type { AdminDeps } from './context.js';
import { asObject, optBool, optString, readJson, readText, sendError, sendJson } from './http-json.js';
import { parseResources, resourceToContent } from './resource.js';
import { seedArchive } from './seed.js';
import { readEvents } from './events-view.js';
import { buildStatus, parseModelRef } from './status-view.js';
import { verifyStore } from './verify.js';

// The admin API's routes: thin adapters from HTTP+JSON to the operations the CLI also runs
// directly on the state directory when no daemon is running.
//
//   GET    /v1/health                      {ok, pid, version, node, stateDir}
//   GET    /v1/status[?model=ns/name]      StatusReport
//   POST   /v1/apply[?dryRun=true]         one InferenceModel resource (JSON, or YAML with content-type */yaml) -> ApplyResult
//                                          (dryRun: ApplyPlan, with the specs before and after; nothing written)
//   DELETE /v1/models/<ns>/<name>          remove a local spec
//   POST   /v1/rollback {namespace,name,to?}   (release: true ends a hold instead)
//   POST   /v1/defer {namespace,name,until?|for?}   DeferResult: hold the switch (release: true ends the hold)
//   POST   /v1/gc {dryRun?, all?}          GcResult
//   POST   /v1/seed {path, sha256?, namespace?, name?, version?, replace?}
//          with `accept: application/x-ndjson`: {"progress":{bytes,total}} lines, then {"result":...}
//   POST   /v1/verify {repair?}            VerifyReport
//   GET    /v1/config                      ConfigView: the daemon's configuration and each value's source
//   GET    /v1/events[?model=ns/name&limit=n&after=id]   (after: oldest first, for --follow)

export interface HandlerContext {
  deps: AdminDeps;
  maxBodyBytes: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL, ctx: HandlerContext, params: string[]) => Promise<void>;

const routes: Array<{ method: string; path: RegExp; handler: Handler }> = [
  { method: 'GET', path: /^\/v1\/health$/, handler: health },
  { method: 'GET', path: /^\/v1\/status$/, handler: status },
  { method: 'POST', path: /^\/v1\/apply$/, handler: apply },
  { method: 'DELETE', path: /^\/v1\/models\/([^/]+)\/([^/]+)$/, handler: remove },
  { method: 'POST', path: /^\/v1\/rollback$/, handler: doRollback },
  { method: 'POST', path: /^\/v1\/defer$/, handler: doDefer },
  { method: 'POST', path: /^\/v1\/gc$/, handler: gc },
  { method: 'POST', path: /^\/v1\/seed$/, handler: seed },
  { method: 'POST', path: /^\/v1\/verify$/, handler: verify },
  { method: 'GET', path: /^\/v1\/events$/, handler: events },
  { method: 'GET', path: /^\/v1\/config$/, handler: configView },
];

export async function handle(req: IncomingMessage, res: ServerResponse, ctx: HandlerContext): Promise<void> {
  try {
    const url = new URL(req.url ?? '/', 'http://modeld');
    const matching = routes.filter((r) => r.path.test(url.pathname));
    if (!matching.length) throw new ModeldError('NotFound', `no such endpoint: ${url.pathname.slice(0, 200)}`);
    const route = matching.find((r) => r.method === req.method);
    if (!route) {
      res.setHeader('allow', matching.map((r) => r.method).join(', '));
      return sendJson(res, 405, { error: `method ${req.method} not allowed on ${url.pathname}`, reason: 'BadRequest' });
    }
    const params = url.pathname.match(route.path)!.slice(1).map(decodeURIComponent);
    await route.handler(req, res, url, ctx, params);
  } catch (err) {
    sendError(res, err);
  }
}

async function health(_req: IncomingMessage, res: ServerResponse, _url: URL, { deps }: HandlerContext) {
  sendJson(res, 200, { ok: true, pid: process.pid, version: AGENT_VERSION, node: deps.config.node.name, stateDir: deps.paths.root });
}

async function status(_req: IncomingMessage, res: ServerResponse, url: URL, { deps }: HandlerContext) {
  const ref = url.searchParams.get('model');
  const report = buildStatus(
    { store: deps.store, serving: deps.serving, node: deps.config.node.name, stateDir: deps.paths.root, daemon: true },
    ref ? parseModelRef(ref) : undefined,
  );
  sendJson(res, 200, report);
}

async function apply(req: IncomingMessage, res: ServerResponse, url: URL, { deps, maxBodyBytes }: HandlerContext) {
  let content;
  if (/yaml/i.test(req.headers['content-type'] ?? '')) {
    const docs = parseResources(await readText(req, maxBodyBytes), 'request body');
    if (docs.length !== 1) throw new ModeldError('BadRequest', `request body: one resource per request (got ${docs.length})`);
    content = docs[0];
  } else {
    content = resourceToContent(await readJson(req, maxBodyBytes), 'request body');
  }
  if (url.searchParams.get('dryRun') === 'true') return sendJson(res, 200, { ...planApply(deps, content), dryRun: true });
  sendJson(res, 200, applyLocal(deps, content));
}

async function remove(_req: IncomingMessage, res: ServerResponse, _url: URL, { deps }: HandlerContext, [ns, name]: string[]) {
  const ref = parseModelRef(`${ns}/${name}`);
  sendJson(res, 200, deleteLocal(deps, ref.namespace, ref.name));
}

async function doRollback(req: IncomingMessage, res: ServerResponse, _url: URL, { deps, maxBodyBytes }: HandlerContext) {
  const body = asObject(await readJson(req, maxBodyBytes));
  const ref = parseModelRef(`${optString(body, 'namespace') ?? 'default'}/${optString(body, 'name') ?? ''}`);
  if (optBool(body, 'release')) return sendJson(res, 200, releaseHold(deps, ref.namespace, ref.name));
  sendJson(res, 200, rollback(deps, ref.namespace, ref.name, optString(body, 'to')));
}

async function doDefer(req: IncomingMessage, res: ServerResponse, _url: URL, { deps, maxBodyBytes }: HandlerContext) {
  const body = asObject(await readJson(req, maxBodyBytes));
  const ref = parseModelRef(`${optString(body, 'namespace') ?? 'default'}/${optString(body, 'name') ?? ''}`);
  const request = { until: optString(body, 'until'), for: optString(body, 'for') };
  if (optBool(body, 'release')) {
    if (request.until !== undefined || request.for !== undefined) throw new ModeldError('BadRequest', 'release goes with neither until nor for');
    return sendJson(res, 200, releaseDeferral(deps, ref.namespace, ref.name));
  }
  sendJson(res, 200, defer(deps, ref.namespace, ref.name, request));
}

async function gc(req: IncomingMessage, res: ServerResponse, _url: URL, { deps, maxBodyBytes }: HandlerContext) {
  const body = asObject(await readJson(req, maxBodyBytes));
  const result = await runGc(deps, { dryRun: optBool(body, 'dryRun') ?? false, all: optBool(body, 'all') ?? false });
  sendJson(res, 200, result);
}

async function seed(req: IncomingMessage, res: ServerResponse, _url: URL, { deps, maxBodyBytes }: HandlerContext) {
  const body = asObject(await readJson(req, maxBodyBytes));
  const request = {
    path: optString(body, 'path') ?? '',
    sha256: optString(body, 'sha256'),
    namespace: optString(body, 'namespace'),
    name: optString(body, 'name'),
    version: optString(body, 'version'),
    replace: optBool(body, 'replace') ?? false,
  };
  if (request.name !== undefined) Object.assign(request, parseModelRef(`${request.namespace ?? 'default'}/${request.name}`));
  // The caller hanging up cancels the copy (nothing half-written stays in the store).
  const abort = new AbortController();
  res.on('close', () => {
    if (!res.writableFinished) abort.abort();
  });
  const streaming = (req.headers.accept ?? '').includes('application/x-ndjson');
  let last = 0;
  const onProgress = streaming
    ? (bytes: number, total: number) => {
        if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        const now = Date.now();
        if (now - last < 200 && bytes < total) return;
        last = now;
        res.write(JSON.stringify({ progress: { bytes, total } }) + '\n');
      }
    : undefined;
  const result = await seedArchive(deps, request, { onProgress, signal: abort.signal });
  if (!streaming) return sendJson(res, 200, result);
  if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  res.end(JSON.stringify({ result }) + '\n');
}

async function verify(req: IncomingMessage, res: ServerResponse, _url: URL, { deps, maxBodyBytes }: HandlerContext) {
  const body = asObject(await readJson(req, maxBodyBytes));
  sendJson(res, 200, await verifyStore(deps, { repair: optBool(body, 'repair') ?? true }));
}

async function events(_req: IncomingMessage, res: ServerResponse, url: URL, { deps }: HandlerContext) {
  const ref = url.searchParams.get('model');
  const limit = Number(url.searchParams.get('limit') ?? 50);
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ModeldError('BadRequest', 'limit must be an integer from 1 to 1000');
  const afterParam = url.searchParams.get('after');
  const after = afterParam === null ? undefined : Number(afterParam);
  if (after !== undefined && (!Number.isInteger(after) || after < 0)) throw new ModeldError('BadRequest', 'after must be an event id');
  sendJson(res, 200, { events: readEvents(deps.store, { model: ref ? parseModelRef(ref) : undefined, limit, after }) });
}

async function configView(_req: IncomingMessage, res: ServerResponse, _url: URL, { deps }: HandlerContext) {
  if (!deps.configView) throw new ModeldError('NotFound', 'this daemon keeps no view of its configuration');
  sendJson(res, 200, { pid: process.pid, ...deps.configView });
}
